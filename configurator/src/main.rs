//! The `acrn-configurator` command line. Exit status: 0 success (valid), 1 invalid input,
//! 2 usage error. Each subcommand is one function; add new ones (`generate`, `build`, `run`)
//! as a variant of [`Command`] and a `cmd_*` function.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use acrn_configurator::diag::Findings;
use acrn_configurator::{paths, scenario, schema, validate, ValidateOptions};

#[derive(Parser)]
#[command(
    name = "acrn-configurator",
    version = concat!(env!("CARGO_PKG_VERSION"), " (board and scenario formats of ACRN v3.3)"),
    about = "Configure, build and boot the ACRN-compatible hypervisor: validate ACRN board and \
scenario files, convert scenarios (XML, TOML), generate the static tables, build the hypervisor \
and its boot image, and run it in QEMU or Bochs",
    after_help = "Board and scenario files are those of ACRN v3.3 (the format is unchanged since \
v3.0 and in ACRN's master as of 2025-08). `acrn-configurator COMMAND --help` describes a command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a board and a scenario; print every finding.
    Validate {
        /// Board file, or a board NAME (configs/NAME/NAME.xml).
        #[arg(long)]
        board: String,
        /// Scenario file (XML or TOML), or a scenario NAME (configs/<board>/NAME.xml).
        #[arg(long)]
        scenario: String,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Let warnings pass (by default, as in ACRN, warnings fail validation).
        #[arg(long)]
        allow_warnings: bool,
    },
    /// Print the JSON Schema of a model, or write both to a directory.
    Schema {
        /// Which model; required unless --out is given (then both are written).
        #[arg(value_enum)]
        which: Option<Which>,
        /// Write `scenario.schema.json` / `board.schema.json` into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Convert a scenario between XML and TOML (by the files' extensions).
    Convert { input: PathBuf, output: PathBuf },
    /// Validate, allocate and write vm_tables.rs, partition.md and manifest.json into DIR
    /// (nothing is written unless every step succeeds).
    Generate {
        /// Board file, or a board NAME (configs/NAME/NAME.xml).
        #[arg(long)]
        board: String,
        /// Scenario file (XML or TOML), or a scenario NAME (configs/<board>/NAME.xml).
        #[arg(long)]
        scenario: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Let warnings pass (by default, as in ACRN, warnings fail validation).
        #[arg(long)]
        allow_warnings: bool,
    },
    /// Describe a check id (e.g. C07, S005), or list every check id.
    Explain {
        /// The check id; without it, the whole catalogue.
        id: Option<String>,
        /// Print the catalogue as a Markdown table (as in configurator/README.md).
        #[arg(long, conflicts_with = "id")]
        markdown: bool,
    },
    /// Generate the tables and build the hypervisor, plus a GRUB ISO when every boot module is
    /// there (--all-scenarios: each scenario of the board's folder).
    Build(acrn_configurator::image::cli::BuildArgs),
    /// Build, then boot the image in QEMU or Bochs and show the console.
    Run(acrn_configurator::image::cli::RunArgs),
    /// Write the board file of the Linux machine this runs on (run as root on the target).
    Inspect(acrn_configurator::inspect::cli::InspectArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Board,
    Scenario,
}

/// An error that is the user's invocation, not their files: exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate {
            board,
            scenario,
            format,
            allow_warnings,
        } => cmd_validate(&board, &scenario, format, allow_warnings),
        Command::Schema { which, out } => cmd_schema(which, out.as_deref()),
        Command::Convert { input, output } => cmd_convert(&input, &output),
        Command::Explain { id, markdown } => cmd_explain(id.as_deref(), markdown),
        Command::Build(a) => Ok(acrn_configurator::image::cli::cmd_build(a)),
        Command::Run(a) => Ok(acrn_configurator::image::cli::cmd_run(a)),
        Command::Inspect(a) => Ok(acrn_configurator::inspect::cli::cmd_inspect(a)),
        Command::Generate {
            board,
            scenario,
            out,
            format,
            allow_warnings,
        } => cmd_generate(&board, &scenario, &out, format, allow_warnings),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn print_findings(findings: &Findings, format: Format) {
    match format {
        Format::Json => println!("{}", findings.render_json()),
        Format::Human => eprint!("{}", findings.render_human(std::io::stderr().is_terminal())),
    }
}

/// Resolves `--board`/`--scenario` (names or paths); a file that does not exist is a usage
/// error (exit 2), not a finding.
fn resolve(board: &str, scen: &str) -> Result<(PathBuf, PathBuf)> {
    let root = paths::repo_root();
    let board_path = paths::resolve_board(board, &root).map_err(|e| UsageError(e.to_string()))?;
    let scenario_path =
        paths::resolve_scenario(scen, &board_path, &root).map_err(|e| UsageError(e.to_string()))?;
    for p in [&board_path, &scenario_path] {
        if !p.exists() {
            bail!(UsageError(format!("{}: no such file", p.display())));
        }
    }
    Ok((board_path, scenario_path))
}

fn cmd_validate(board: &str, scen: &str, format: Format, allow_warnings: bool) -> Result<ExitCode> {
    let (board_path, scenario_path) = resolve(board, scen)?;
    let report = validate(
        &board_path,
        &scenario_path,
        &ValidateOptions { allow_warnings },
    );
    print_findings(&report.findings, format);
    if let Format::Human = format {
        let f = &report.findings;
        let errors = f.count(acrn_configurator::diag::Severity::Error)
            + f.count(acrn_configurator::diag::Severity::Critical);
        let warnings = f.count(acrn_configurator::diag::Severity::Warning);
        if report.valid {
            eprintln!("{}: valid ({warnings} warning(s))", scenario_path.display());
        } else {
            eprintln!(
                "{}: invalid: {errors} error(s), {warnings} warning(s){}",
                scenario_path.display(),
                if errors == 0 {
                    " (use --allow-warnings to accept warnings)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cmd_generate(
    board: &str,
    scen: &str,
    out: &Path,
    format: Format,
    allow_warnings: bool,
) -> Result<ExitCode> {
    let (board_path, scenario_path) = resolve(board, scen)?;
    let opts = acrn_configurator::gen::GenerateOptions {
        allow_warnings,
        scenario_name: None,
    };
    match acrn_configurator::gen::generate(&board_path, &scenario_path, &opts) {
        Ok(files) => {
            files
                .write_to(out)
                .with_context(|| format!("writing into {}", out.display()))?;
            for (name, _) in &files.files {
                eprintln!("wrote {}", out.join(name).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(report) => {
            print_findings(&report.findings, format);
            eprintln!("{}: nothing generated", scenario_path.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn cmd_explain(id: Option<&str>, markdown: bool) -> Result<ExitCode> {
    use acrn_configurator::catalog;
    match id {
        Some(id) => match catalog::lookup(id) {
            Some((id, sev, rule)) => println!("{id} ({sev}): {rule}"),
            None => {
                return Err(UsageError(format!(
                    "`{id}` is not a check id (run `acrn-configurator explain` for the list)"
                ))
                .into())
            }
        },
        None if markdown => print!("{}", catalog::markdown()),
        None => {
            for (id, sev, rule) in catalog::all() {
                println!("{id:<5} {:<8} {rule}", sev.to_string());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_schema(which: Option<Which>, out: Option<&Path>) -> Result<ExitCode> {
    let text = |w: Which| match w {
        Which::Board => (schema::BOARD_SCHEMA_FILE, schema::board_schema()),
        Which::Scenario => (schema::SCENARIO_SCHEMA_FILE, schema::scenario_schema()),
    };
    match (which, out) {
        (Some(w), None) => print!("{}", text(w).1),
        (None, None) => {
            return Err(UsageError(
                "say which schema (board or scenario), or give --out DIR".into(),
            )
            .into())
        }
        (w, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let all = [Which::Scenario, Which::Board];
            for w in all.into_iter().filter(|x| w.is_none_or(|w| w == *x)) {
                let (name, body) = text(w);
                write_atomically(&dir.join(name), &body)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_convert(input: &Path, output: &Path) -> Result<ExitCode> {
    let ext = |p: &Path| {
        p.extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
    };
    let out_ext = ext(output);
    if !matches!(out_ext.as_deref(), Some("xml" | "toml")) {
        bail!(UsageError(format!(
            "{}: the output must end in .xml or .toml",
            output.display()
        )));
    }
    let (model, findings) = match scenario::read_scenario_file(input) {
        Ok(x) => x,
        Err(findings) => {
            print_findings(&findings, Format::Human);
            eprintln!("{}: not converted", input.display());
            return Ok(ExitCode::from(1));
        }
    };
    if !findings.is_empty() {
        print_findings(&findings, Format::Human);
    }
    let body = if out_ext.as_deref() == Some("toml") {
        scenario::to_toml(&model, &schema_ref(output))?
    } else {
        scenario::to_xml(&model)?
    };
    write_atomically(output, &body)?;
    Ok(ExitCode::SUCCESS)
}

/// How a TOML file at `output` refers to the committed scenario schema: a relative path
/// when both are on the same tree, else the schema's absolute path.
fn schema_ref(output: &Path) -> String {
    let schema = paths::repo_root()
        .join("schemas")
        .join(schema::SCENARIO_SCHEMA_FILE);
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match (std::fs::canonicalize(dir), std::fs::canonicalize(&schema)) {
        // Only a path within one tree helps; across trees the absolute path is clearer.
        (Ok(d), Ok(s)) if common_len(&d, &s) > 1 => relative(&d, &s).display().to_string(),
        (_, Ok(s)) => s.display().to_string(),
        _ => schema.display().to_string(),
    }
}

fn common_len(a: &Path, b: &Path) -> usize {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .count()
}

fn relative(from_dir: &Path, to: &Path) -> PathBuf {
    let a: Vec<_> = from_dir.components().collect();
    let b: Vec<_> = to.components().collect();
    let common = common_len(from_dir, to);
    let mut p = PathBuf::new();
    for _ in common..a.len() {
        p.push("..");
    }
    for c in &b[common..] {
        p.push(c);
    }
    p
}

/// Writes via a temporary file and a rename, so a failure never leaves half a file.
fn write_atomically(path: &Path, body: &str) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("writing {}", path.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}
