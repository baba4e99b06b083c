//! The `build` and `run` subcommands' arguments and their glue to [`super::build`] and
//! [`super::emulator::run`]; main.rs only dispatches here.
//!
//! Exit status of `build`: 0 built, 1 invalid configuration or failed step, 2 usage error.
//! Exit status of `run`: as `build` when building fails; otherwise 0 when the time limit
//! ended the run (a hypervisor never returns, so that is how a demo ends), the emulator's
//! own status when it exited by itself (QEMU: 0, or `(v << 1) | 1` after isa-debug-exit v;
//! Bochs: 1 after the shutdown port), 1 when the emulator was killed by a signal, and 0 when
//! the console's reader went away (e.g. `run ... | head`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::paths;

use super::{BuildOptions, Emulator, ImageError, RunOutcome};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes DIR/acrn.elf, DIR/acrn.iso (GRUB: multiboot2 + one module2 per boot module tag), \
DIR/gen/ (vm_tables.rs, partition.md, manifest.json) and DIR/manifest.json. Built in DIR.tmp and renamed: \
a failed build leaves no DIR. Default modules for KERNEL_ELF VMs: the test guests (hello.elf; rogue.elf for \
a VM named *ROGUE* or, when none is, the second pre-launched VM; bench.elf for *BENCH*).\n\
Exit status: 0 built, 1 invalid configuration or a failed step, 2 usage error."
)]
pub struct BuildArgs {
    /// Board file, or a board NAME (configs/NAME/NAME.xml).
    #[arg(long)]
    pub board: String,
    /// Scenario file (XML or TOML), or a scenario NAME (configs/<board>/NAME.xml).
    #[arg(long)]
    pub scenario: String,
    /// Output directory (replaced if an earlier build wrote it).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A boot module: the file for a kern_mod/ramdisk_mod TAG of the scenario (repeatable).
    /// Tags not given get a test guest (tests/guests), see `image::modules`.
    #[arg(long = "module", value_name = "TAG=FILE")]
    pub modules: Vec<String>,
    /// Build the hypervisor with cargo's release profile.
    #[arg(long)]
    pub release: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EmulatorArg {
    Qemu,
    Bochs,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when --timeout ended the run; the emulator's own status when it \
exited by itself (QEMU isa-debug-exit v: (v<<1)|1; Bochs: 1 after the shutdown port); 1 when the \
build failed or the emulator was killed; 2 for usage errors.\n\
Files: DIR/console.log (the console of the last run), DIR/qemu.log or DIR/bochs.log, DIR/manifest.json."
)]
pub struct RunArgs {
    /// Board file, or a board NAME (configs/NAME/NAME.xml).
    #[arg(long)]
    pub board: String,
    /// Scenario file (XML or TOML), or a scenario NAME (configs/<board>/NAME.xml).
    #[arg(long)]
    pub scenario: String,
    /// Output directory of the build (default: target/acrn-run/<board>-<scenario>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A boot module: the file for a kern_mod/ramdisk_mod TAG of the scenario (repeatable).
    #[arg(long = "module", value_name = "TAG=FILE")]
    pub modules: Vec<String>,
    /// Build the hypervisor with cargo's release profile.
    #[arg(long)]
    pub release: bool,
    /// Default: the board's (AMD/svm: qemu, Intel/vmx: bochs).
    #[arg(long, value_enum)]
    pub emulator: Option<EmulatorArg>,
    /// Stop the emulator after SECS seconds (default: run until it exits or Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

fn report(e: &ImageError) -> ExitCode {
    match e {
        ImageError::Invalid(r) => {
            eprint!(
                "{}",
                r.findings.render_human(std::io::stderr().is_terminal())
            );
            eprintln!("error: {e}; nothing was built");
        }
        ImageError::BadModuleArg(_)
        | ImageError::DuplicateModule(_)
        | ImageError::UnknownModuleTag { .. } => return usage(e),
        _ => eprintln!("error: {e}"),
    }
    ExitCode::from(1)
}

/// Resolves names and `--module` arguments into [`BuildOptions`], or a usage error.
fn options(
    board: &str,
    scenario: &str,
    out: Option<PathBuf>,
    modules: &[String],
    release: bool,
) -> Result<BuildOptions, ExitCode> {
    let root = paths::repo_root();
    let board_path = paths::resolve_board(board, &root).map_err(usage)?;
    let scenario_path = paths::resolve_scenario(scenario, &board_path, &root).map_err(usage)?;
    let modules = modules
        .iter()
        .map(|m| super::parse_module_arg(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let out = out.unwrap_or_else(|| {
        let stem = |p: &std::path::Path| {
            p.file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        };
        root.join("target").join("acrn-run").join(format!(
            "{}-{}",
            stem(&board_path),
            stem(&scenario_path)
        ))
    });
    Ok(BuildOptions {
        board: board_path,
        scenario: scenario_path,
        out,
        modules,
        release,
        repo_root: root,
    })
}

pub fn cmd_build(a: BuildArgs) -> ExitCode {
    let opts = match options(&a.board, &a.scenario, Some(a.out), &a.modules, a.release) {
        Ok(o) => o,
        Err(code) => return code,
    };
    match super::build(&opts, &mut |m| eprintln!("{m}")) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

pub fn cmd_run(a: RunArgs) -> ExitCode {
    let timeout = match a.timeout {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            return usage("--timeout must be a positive number of seconds")
        }
        t => t.map(Duration::from_secs_f64),
    };
    let opts = match options(&a.board, &a.scenario, a.out, &a.modules, a.release) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let built = match super::build(&opts, &mut |m| eprintln!("{m}")) {
        Ok(b) => b,
        Err(e) => return report(&e),
    };
    let emu = match a.emulator {
        Some(EmulatorArg::Qemu) => Emulator::Qemu,
        Some(EmulatorArg::Bochs) => Emulator::Bochs,
        None => built.machine.default_emulator(),
    };
    eprintln!(
        "run: {}{}",
        super::emulator::command_line(emu, &built.machine, &built.dir).join(" "),
        timeout
            .map(|t| format!(" (for {}s)", t.as_secs_f64()))
            .unwrap_or_default()
    );
    let mut stdout = std::io::stdout();
    match super::emulator::run(emu, &built.machine, &built.dir, timeout, &mut stdout) {
        Ok(RunOutcome::TimedOut) => {
            eprintln!("run: time limit reached; {} stopped", emu.name());
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::OutputClosed) => ExitCode::SUCCESS,
        Ok(RunOutcome::Exited(code)) => {
            eprintln!(
                "run: {} exited ({})",
                emu.name(),
                code.map_or("signal".into(), |c| format!("status {c}"))
            );
            ExitCode::from(code.map_or(1, |c| c.clamp(0, 255) as u8))
        }
        Err(e) => report(&e),
    }
}
