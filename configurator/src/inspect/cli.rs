//! The `inspect` subcommand: arguments and the write-out (all or nothing).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{inspect, HostPlatform, SysRoot};

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Write the board file here (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Board name (the `board` attribute; default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Read DIR/sys, DIR/proc and DIR/dev instead of /sys, /proc and /dev (CPUID still comes
    /// from this machine).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

fn default_name(root: &SysRoot) -> String {
    let host = std::fs::read_to_string(root.proc.join("sys/kernel/hostname")).unwrap_or_default();
    let name: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "board".into()
    } else {
        name
    }
}

/// Inspects, checks the result with our own board reader, writes it; warnings go to stderr.
pub fn cmd_inspect(args: InspectArgs) -> ExitCode {
    let root = args
        .root
        .as_deref()
        .map(SysRoot::under)
        .unwrap_or_else(SysRoot::host);
    let name = args.name.unwrap_or_else(|| default_name(&root));
    let started = std::time::Instant::now();
    let ins = inspect(&root, &HostPlatform, &name);
    for w in &ins.warnings {
        eprintln!("warning: {w}");
    }
    let shown = args
        .out
        .as_deref()
        .unwrap_or(Path::new("<stdout>"))
        .to_path_buf();
    // What we write must load in our own configurator.
    if let Err(e) = crate::board::load_board_str(&shown, &ins.xml) {
        eprintln!("error: the inspected board does not load (a bug in inspect):\n{e}");
        return ExitCode::from(1);
    }
    let written = match &args.out {
        Some(path) => write_atomically(path, ins.xml.as_bytes()),
        None => std::io::stdout().write_all(ins.xml.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("error: cannot write {}: {e}", shown.display());
        return ExitCode::from(1);
    }
    eprintln!(
        "inspect: board `{name}` written to {} in {} ms ({} warning(s))",
        shown.display(),
        started.elapsed().as_millis(),
        ins.warnings.len()
    );
    ExitCode::SUCCESS
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("xml.tmp");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
