//! The `build` and `run` subcommands' arguments and their glue to [`super::build`] and
//! [`super::emulator::run`]; main.rs only dispatches here.
//!
//! Exit status of `build`: 0 built, 1 invalid configuration or failed step, 2 usage error.
//! Exit status of `run`: as `build` when building fails; otherwise 0 when the hypervisor
//! powered the machine off after every VM stopped (its console line says so), 0 when the
//! time limit ended the run (a hypervisor whose VMs run on never returns), the emulator's
//! own status when it exited by itself (QEMU: 0, or `(v << 1) | 1` after isa-debug-exit v;
//! Bochs: 1 after the shutdown port), 1 when the emulator was killed by a signal, and 0 when
//! the console's reader went away (e.g. `run ... | head`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::paths;

use super::modules::TestGuests;
use super::{BuildOptions, Emulator, ImageError, RunOutcome};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes DIR/acrn.elf, DIR/manifest.json, DIR/grub.cfg (multiboot2 + one module2 line per boot \
module tag), DIR/gen/ (vm_tables.rs, partition.md, manifest.json) and, when every module is there, \
DIR/acrn.iso. A module not given with --module is reported as missing and its grub.cfg line has a path to \
fill in (as ACRN's `make BOARD= SCENARIO=`, which builds the hypervisor alone). On the boards of configs/ \
(emulated machines) KERNEL_ELF VMs default to the test guests instead (hello.elf; rogue.elf for a VM named \
*ROGUE* or, when none is, the second pre-launched VM; bench.elf for *BENCH*; service-vm.elf for the Service \
VM of a scenario with post-launched VMs); --no-test-guests turns that off. Built in DIR.tmp and renamed: \
a failed build leaves no DIR.\n\
--all-scenarios builds every scenario file of the board's folder into DIR/<scenario>/, goes on past a \
scenario that fails and lists the failures.\n\
Exit status: 0 built (also with modules missing), 1 invalid configuration or a failed step, 2 usage error."
)]
pub struct BuildArgs {
    /// Board file, or a board NAME (configs/NAME/NAME.xml).
    #[arg(long)]
    pub board: String,
    /// Scenario file (XML or TOML), or a scenario NAME (configs/<board>/NAME.xml).
    #[arg(long, required_unless_present = "all_scenarios")]
    pub scenario: Option<String>,
    /// Build every scenario in the board file's folder, each into DIR/<scenario>/.
    #[arg(long, conflicts_with_all = ["scenario", "modules"])]
    pub all_scenarios: bool,
    /// Output directory (replaced if an earlier build wrote it).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A boot module: the file for a kern_mod/ramdisk_mod TAG of the scenario (repeatable).
    #[arg(long = "module", value_name = "TAG=FILE")]
    pub modules: Vec<String>,
    /// Build the hypervisor with cargo's release profile.
    #[arg(long)]
    pub release: bool,
    /// No test guests as default modules, also on the boards of configs/.
    #[arg(long)]
    pub no_test_guests: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum EmulatorArg {
    Qemu,
    Bochs,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when the hypervisor powered the machine off after every VM had \
stopped, or when --timeout ended the run; otherwise the emulator's own status when it exited by \
itself (QEMU isa-debug-exit v: (v<<1)|1; Bochs: 1 after the shutdown port); 1 when the build \
failed or the emulator was killed; 2 for usage errors.\n\
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
    /// On the boards of configs/, KERNEL_ELF VMs default to the test guests.
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
    /// Type FILE's bytes into the console once the hypervisor shell shows its prompt
    /// (`ACRN:\>`), one byte every 20 ms and 400 ms after each line, so the UART's FIFO never
    /// overflows. A NUL byte is Ctrl+Space, which leaves `vm_console`.
    #[arg(long, value_name = "FILE")]
    pub console_input: Option<PathBuf>,
}

/// The most `--console-input` takes (it is typed slowly: 64 KiB is about 20 minutes).
const CONSOLE_INPUT_MAX: u64 = 64 << 10;

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
        | ImageError::UnknownModuleTag { .. }
        | ImageError::MissingModules(_)
        | ImageError::NotRegularFile(_) => return usage(e),
        _ => eprintln!("error: {e}"),
    }
    ExitCode::from(1)
}

/// How the scenario is chosen and what a missing module means.
struct Want<'a> {
    scenario: &'a str,
    out: Option<PathBuf>,
    modules: &'a [String],
    release: bool,
    no_test_guests: bool,
    require_modules: bool,
}

/// The boards of configs/ are emulated machines with no OS of their own: their VMs default to
/// the test guests. Any other board is real hardware: its kernels are the user's.
fn test_guests(board: &Path, root: &Path, no_test_guests: bool) -> TestGuests {
    let ours = match (board.canonicalize(), root.join("configs").canonicalize()) {
        (Ok(b), Ok(c)) => b.starts_with(c),
        _ => false,
    };
    if ours && !no_test_guests {
        TestGuests::Default
    } else {
        TestGuests::None
    }
}

/// Resolves names and `--module` arguments into [`BuildOptions`], or a usage error.
fn options(board: &str, w: Want) -> Result<BuildOptions, ExitCode> {
    let root = paths::repo_root();
    let board_path = paths::resolve_board(board, &root).map_err(usage)?;
    let scenario_path = paths::resolve_scenario(w.scenario, &board_path, &root).map_err(usage)?;
    let modules = w
        .modules
        .iter()
        .map(|m| super::parse_module_arg(m))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let out = w.out.unwrap_or_else(|| {
        root.join("target").join("acrn-run").join(format!(
            "{}-{}",
            stem(&board_path),
            stem(&scenario_path)
        ))
    });
    Ok(BuildOptions {
        test_guests: test_guests(&board_path, &root, w.no_test_guests),
        board: board_path,
        scenario: scenario_path,
        out,
        modules,
        release: w.release,
        repo_root: root,
        require_modules: w.require_modules,
    })
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

pub fn cmd_build(a: BuildArgs) -> ExitCode {
    if a.all_scenarios {
        return build_all(&a);
    }
    let opts = match options(
        &a.board,
        Want {
            scenario: a.scenario.as_deref().unwrap_or_default(),
            out: Some(a.out),
            modules: &a.modules,
            release: a.release,
            no_test_guests: a.no_test_guests,
            require_modules: false,
        },
    ) {
        Ok(o) => o,
        Err(code) => return code,
    };
    match super::build(&opts, &mut |m| eprintln!("{m}")) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

/// The scenario files of a board's folder (every `.xml` but the board file, every `.toml`),
/// each with the name of its output directory: the file stem, or the whole file name when two
/// files share a stem (partitioned.xml and partitioned.toml).
fn scenarios_of(board: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let dir = board.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let board_name = board.file_name();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name() != board_name
                && p.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("xml") || e.eq_ignore_ascii_case("toml")
                })
        })
        .collect();
    files.sort();
    Ok(files
        .iter()
        .map(|f| {
            let shared = files.iter().filter(|g| stem(g) == stem(f)).count() > 1;
            let name = if shared {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            } else {
                stem(f)
            };
            (name, f.clone())
        })
        .collect())
}

/// `build --all-scenarios`: every scenario of the board's folder into DIR/<scenario>/.
fn build_all(a: &BuildArgs) -> ExitCode {
    let root = paths::repo_root();
    let board = match paths::resolve_board(&a.board, &root) {
        Ok(b) => b,
        Err(e) => return usage(e),
    };
    let scenarios = match scenarios_of(&board) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return usage(format!("no scenario files beside {}", board.display())),
        Err(e) => return usage(format!("{}: {e}", board.display())),
    };
    if let Err(e) = std::fs::create_dir_all(&a.out) {
        eprintln!("error: {}: {e}", a.out.display());
        return ExitCode::from(1);
    }
    let mut summary = Vec::new();
    let mut failed = Vec::new();
    for (name, file) in &scenarios {
        eprintln!("== {name} ({})", file.display());
        let opts = BuildOptions {
            board: board.clone(),
            scenario: file.clone(),
            out: a.out.join(name),
            modules: Vec::new(),
            release: a.release,
            repo_root: root.clone(),
            test_guests: test_guests(&board, &root, a.no_test_guests),
            require_modules: false,
        };
        match super::build(&opts, &mut |m| eprintln!("{m}")) {
            Ok(b) if b.manifest.missing_modules.is_empty() => {
                summary.push(format!("{name}: built (acrn.elf, acrn.iso)"));
            }
            Ok(b) => {
                let tags: Vec<&str> = b
                    .manifest
                    .missing_modules
                    .iter()
                    .map(|m| m.tag.as_str())
                    .collect();
                summary.push(format!(
                    "{name}: built (acrn.elf; no ISO, modules missing: {})",
                    tags.join(", ")
                ));
            }
            Err(e) => {
                report(&e);
                summary.push(format!("{name}: FAILED: {e}"));
                failed.push(name.as_str());
            }
        }
    }
    eprintln!(
        "\nbuild --all-scenarios {} into {}:",
        board.display(),
        a.out.display()
    );
    for line in &summary {
        eprintln!("  {line}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: {} of {} scenario(s) failed: {}",
            failed.len(),
            scenarios.len(),
            failed.join(", ")
        );
        ExitCode::from(1)
    }
}

pub fn cmd_run(a: RunArgs) -> ExitCode {
    let timeout = match a.timeout {
        Some(t) if !(t.is_finite() && t > 0.0) => {
            return usage("--timeout must be a positive number of seconds")
        }
        t => t.map(Duration::from_secs_f64),
    };
    let input = match &a.console_input {
        None => None,
        Some(p) => match crate::bounded::read(p, CONSOLE_INPUT_MAX) {
            Ok(bytes) => Some(bytes),
            Err(e) => return usage(format!("--console-input {}: {e}", p.display())),
        },
    };
    let opts = match options(
        &a.board,
        Want {
            scenario: &a.scenario,
            out: a.out,
            modules: &a.modules,
            release: a.release,
            no_test_guests: false,
            require_modules: true,
        },
    ) {
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
    match super::emulator::run(emu, &built.machine, &built.dir, timeout, input, &mut stdout) {
        Ok(RunOutcome::TimedOut) => {
            eprintln!("run: time limit reached; {} stopped", emu.name());
            ExitCode::SUCCESS
        }
        Ok(RunOutcome::OutputClosed) => ExitCode::SUCCESS,
        Ok(RunOutcome::PoweredOff(code)) => {
            eprintln!(
                "run: every VM has stopped and the machine powered off ({} {})",
                emu.name(),
                code.map_or("killed by a signal".into(), |c| format!("status {c}"))
            );
            ExitCode::SUCCESS
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_of_a_board_folder_are_named_by_stem_unless_two_share_it() {
        let board =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/qemu-epyc/qemu-epyc.xml");
        let names: Vec<String> = scenarios_of(&board)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        // Two files share the stem `partitioned`: both keep their extension; every other
        // scenario is named by its stem alone.
        for name in ["hybrid", "shared", "partitioned.toml", "partitioned.xml"] {
            assert!(names.iter().any(|n| n == name), "{name} missing: {names:?}");
        }
        for name in &names {
            assert!(
                !name.ends_with(".xml") || name == "partitioned.xml",
                "{name} keeps its extension: {names:?}"
            );
        }
    }
}
