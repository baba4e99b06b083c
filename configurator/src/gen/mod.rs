//! Generation: renders the allocation into the files the hypervisor build and the user
//! need (reference acrn-config.md §5.2, in Rust instead of C):
//! * `vm_tables.rs`: `pub const HV_RAM_START` and `pub static PLATFORM:
//!   acrn_static_config::PlatformConfig`, for the hypervisor's `build.rs` to `include!`;
//! * `partition.md`: who owns which CPUs, memory, devices, vUARTs and IVSHMEM regions;
//! * `manifest.json`: VMs, boot module tags, memory and pCPUs for the build/run commands;
//! * `launch_user_vm_id<N>.sh`: ACRN's launch script of each post-launched VM
//!   ([`launch_script`]).
//!
//! Output is a pure function of the inputs (no timestamps, sorted containers only).
//! [`generate`] is the whole pipeline: validate, allocate, render; nothing is written until
//! every stage succeeded ([`GeneratedFiles::write_to`]).

mod context;
pub mod launch_script;
mod manifest;

use std::path::Path;
use std::sync::OnceLock;

use crate::alloc::{self, Allocation};
use crate::board::Board;
use crate::diag::Findings;
use crate::scenario::Scenario;
use crate::{validate, Report, ValidateOptions};

pub use manifest::{Manifest, ManifestVm};

/// Names of the generated files, in the order they are listed.
pub const VM_TABLES: &str = "vm_tables.rs";
pub const PARTITION: &str = "partition.md";
pub const MANIFEST: &str = "manifest.json";

/// The rendered files, in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFiles {
    /// (file name, contents), sorted by name.
    pub files: Vec<(String, String)>,
    /// The typed manifest also rendered into `manifest.json`.
    pub manifest: Manifest,
}

/// Options of [`generate`].
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Accept warnings from validation (by default they stop generation, as in ACRN).
    pub allow_warnings: bool,
    /// Scenario name in headers and the manifest; default: the `scenario` attribute of the
    /// file, else its file stem (a file named `scenario.xml` takes its directory's name).
    pub scenario_name: Option<String>,
}

/// A problem in rendering itself (a template bug): never caused by user input.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("template error: {0}")]
    Template(String),
    #[error("manifest: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<tera::Error> for GenError {
    fn from(e: tera::Error) -> Self {
        // Keep the whole cause chain: tera's top-level message alone says little.
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        GenError::Template(msg)
    }
}

/// Validates, allocates and renders. `Err` holds every finding (validation or allocation)
/// and the models as far as they loaded. The error is large but returned once per run, and
/// callers (build.rs, the image builder) take the `Report` by value.
#[allow(clippy::result_large_err)]
pub fn generate(
    board: &Path,
    scenario: &Path,
    opts: &GenerateOptions,
) -> Result<GeneratedFiles, Report> {
    let report = validate(
        board,
        scenario,
        &ValidateOptions {
            allow_warnings: opts.allow_warnings,
        },
    );
    let (Some(b), Some(s)) = (&report.board, &report.scenario) else {
        return Err(report);
    };
    if !report.valid {
        return Err(report);
    }
    let alloc = match alloc::allocate(b, s) {
        Ok(a) => a,
        Err(f) => return Err(failed(report, f)),
    };
    let scripts = match launch_script::scripts(b, s) {
        Ok(v) => v,
        Err(f) => return Err(failed(report, f)),
    };
    let name = opts
        .scenario_name
        .clone()
        .unwrap_or_else(|| scenario_name(s, scenario));
    match render(b, s, &alloc, &name) {
        Ok(mut files) => {
            for script in &scripts {
                files
                    .files
                    .push((script.file_name(), script.render(&b.name, &name)));
            }
            files.files.sort();
            Ok(files)
        }
        Err(e) => {
            let mut f = Findings::new();
            f.push(
                crate::diag::Finding::critical("A99", e.to_string()).with_hint(
                    "this is a bug in acrn-configurator; please report it with your files",
                ),
            );
            Err(failed(report, f))
        }
    }
}

fn failed(mut report: Report, more: Findings) -> Report {
    report.findings.extend(more);
    report.findings.sort();
    report.valid = false;
    report
}

/// The scenario's name as ACRN's make derives it.
pub fn scenario_name(s: &Scenario, path: &Path) -> String {
    if let Some(n) = s.scenario.as_deref().filter(|n| !n.is_empty()) {
        return n.to_string();
    }
    let stem = path
        .file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == "scenario" {
        if let Some(dir) = path.parent().and_then(|p| p.file_name()) {
            return dir.to_string_lossy().into_owned();
        }
    }
    stem
}

/// Renders the tables, `partition.md` and the manifest from an allocation (the launch
/// scripts come from [`launch_script::scripts`]).
pub fn render(
    board: &Board,
    scenario: &Scenario,
    alloc: &Allocation,
    scenario_name: &str,
) -> Result<GeneratedFiles, GenError> {
    let tera = templates()?;
    let cx = context::build(board, scenario, alloc, scenario_name);
    let ctx = tera::Context::from_value(cx)?;
    let tables = tera.render(VM_TABLES, &ctx)?;
    let partition = tera.render(PARTITION, &ctx)?;
    let manifest = manifest::build(board, scenario, alloc, scenario_name);
    let mut json = serde_json::to_string_pretty(&manifest)?;
    json.push('\n');
    let mut files = vec![
        (MANIFEST.to_string(), json),
        (PARTITION.to_string(), partition),
        (VM_TABLES.to_string(), tables),
    ];
    files.sort();
    Ok(GeneratedFiles { files, manifest })
}

/// The templates, parsed once per process (they are embedded in the binary).
fn templates() -> Result<&'static tera::Tera, GenError> {
    static TERA: OnceLock<Result<tera::Tera, String>> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut t = tera::Tera::default();
        t.autoescape_on(vec![]);
        t.register_filter("rust_str", rust_str);
        t.add_raw_templates(vec![
            (
                VM_TABLES,
                include_str!("../../../templates/vm_tables.rs.tera"),
            ),
            (
                PARTITION,
                include_str!("../../../templates/partition.md.tera"),
            ),
        ])
        .map_err(|e| GenError::from(e).to_string())?;
        Ok(t)
    })
    .as_ref()
    .map_err(|e| GenError::Template(e.clone()))
}

/// Tera filter: a string as a Rust string literal (quotes, backslashes and control
/// characters escaped, so bootargs like `a="b\c"` survive).
fn rust_str(
    v: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let s = v
        .as_str()
        .ok_or_else(|| tera::Error::msg("rust_str expects a string"))?;
    Ok(tera::Value::String(rust_literal(s)))
}

pub(crate) fn rust_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

impl GeneratedFiles {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.as_str())
    }

    /// Writes every file into `dir` (created if needed): all are written to temporary files
    /// first, then renamed into place, so a failure leaves no new file behind (and each
    /// existing file is either the old or the new version, never half). Launch scripts
    /// (`.sh`) are made executable.
    pub fn write_to(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut written: Vec<(std::path::PathBuf, std::path::PathBuf)> = Vec::new();
        let staged = (|| {
            for (name, body) in &self.files {
                let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
                written.push((tmp.clone(), dir.join(name)));
                std::fs::write(&tmp, body)?;
                if name.ends_with(".sh") {
                    make_executable(&tmp)?;
                }
            }
            Ok(())
        })();
        // A rename in one directory fails only when the target is a directory: refuse that
        // before the first rename, so all files are replaced or none.
        let staged = staged.and_then(|()| match written.iter().find(|(_, d)| d.is_dir()) {
            Some((_, d)) => Err(std::io::Error::other(format!(
                "{} is a directory",
                d.display()
            ))),
            None => Ok(()),
        });
        if let Err(e) = staged {
            for (tmp, _) in &written {
                let _ = std::fs::remove_file(tmp);
            }
            return Err(e);
        }
        for (i, (tmp, dest)) in written.iter().enumerate() {
            if let Err(e) = std::fs::rename(tmp, dest) {
                for (t, _) in &written[i..] {
                    let _ = std::fs::remove_file(t);
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rust_literal;

    #[test]
    fn rust_literals_escape_quotes_backslashes_and_controls() {
        assert_eq!(rust_literal(r#"a="b\c""#), r#""a=\"b\\c\"""#);
        assert_eq!(rust_literal("x\ny\t"), r#""x\ny\t""#);
        assert_eq!(rust_literal("\u{7}"), r#""\u{7}""#);
    }
}
