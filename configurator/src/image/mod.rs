//! `build` and `run`: from a board and a scenario to a bootable image, and booting it.
//!
//! [`build`] validates and generates the tables ([`crate::gen::generate`]), builds the
//! hypervisor with cargo (its `build.rs` generates the same tables from `ACRN_BOARD` and
//! `ACRN_SCENARIO`), builds the test guests when a VM's kernel is not given, and writes a GRUB
//! ISO. Everything is written into `DIR.tmp` and renamed to `DIR` at the end, so a failed build
//! leaves no output directory (an earlier build's `DIR` stays as it was). When a boot module is
//! missing ([`modules::Source::Missing`]), the build writes everything but the ISO (and the
//! Bochs files that boot it), and grub.cfg has a line to fill in for each missing module.
//!
//! Output directory:
//! ```text
//! DIR/gen/           vm_tables.rs, partition.md, manifest.json (the configurator's)
//! DIR/acrn.elf       the hypervisor
//! DIR/acrn.iso       GRUB: multiboot2 /boot/acrn.elf, one module2 line per boot module tag
//!                    (only when every module is there)
//! DIR/grub.cfg       the ISO's grub.cfg, or the one to complete for your boot loader
//! DIR/guests/        test guests, when a default module needed them
//! DIR/bochsrc, DIR/bochs.cmds    for `bochs -q -f DIR/bochsrc -rc DIR/bochs.cmds`
//! DIR/manifest.json  board, scenario, VMs, modules (with sha256), emulator command lines
//! ```
//! [`run`] boots such a directory ([`emulator`]).

pub mod cli;
pub mod emulator;
pub mod modules;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::gen::{self, GenerateOptions};
use crate::scenario::{LoadOrder, Scenario};
use crate::{validate, Report, ValidateOptions};

pub use emulator::{Emulator, Machine, RunOutcome};
pub use modules::{parse_module_arg, Source};

/// File names in the output directory.
pub const ELF: &str = "acrn.elf";
pub const ISO: &str = "acrn.iso";
pub const MANIFEST: &str = "manifest.json";
pub const GEN_DIR: &str = "gen";
/// Marks `manifest.json` as ours, so a rebuild may replace the directory.
const GENERATOR: &str = "acrn-configurator build";
/// Present in `DIR.tmp` while a build runs.
const IN_PROGRESS: &str = ".acrn-build-in-progress";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the board or scenario is invalid")]
    Invalid(Box<Report>),
    #[error("--module {0:?}: expected TAG=FILE")]
    BadModuleArg(String),
    #[error("launch description for the post-launched VMs: {0}")]
    Launch(String),
    #[error("--module {0}=...: given twice")]
    DuplicateModule(String),
    #[error("--module `{tag}`: the scenario names no such boot module (its tags: {})", if .known.is_empty() { "none".to_string() } else { .known.join(", ") })]
    UnknownModuleTag { tag: String, known: Vec<String> },
    #[error("--module {tag}={}: no such file", .path.display())]
    ModuleFileMissing { tag: String, path: PathBuf },
    #[error("no file for {}: pass {}", .0.iter().map(|n| format!("{} (`{}`)", n.what(), n.tag)).collect::<Vec<_>>().join(", "), .0.iter().map(|n| format!("--module {}=FILE", n.tag)).collect::<Vec<_>>().join(" "))]
    MissingModules(Vec<modules::Need>),
    #[error("{}: not a regular file; build reads the board and scenario more than once (validation, generation, the hypervisor's build script), so save a FIFO's or a device's content into a file first", .0.display())]
    NotRegularFile(PathBuf),
    #[error("{}: {source}", .path.display())]
    ModuleUnreadable {
        path: PathBuf,
        #[source]
        source: crate::bounded::ReadError,
    },
    #[error("boot module tag `{0}` cannot be passed on a GRUB module2 line (spaces, quotes or control characters)")]
    BadTag(String),
    #[error("`{tool}` is not installed; install it with: {hint}")]
    MissingTool { tool: String, hint: String },
    #[error("{what} failed ({status})")]
    CommandFailed { what: String, status: String },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: exists and is not an output directory of `build` (no {MANIFEST} from it); refusing to replace it", .0.display())]
    NotOurs(PathBuf),
    #[error("cargo did not report the hypervisor executable `acrn`")]
    NoExecutable,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub board: PathBuf,
    pub scenario: PathBuf,
    pub out: PathBuf,
    /// `--module TAG=FILE` overrides.
    pub modules: Vec<(String, PathBuf)>,
    pub release: bool,
    /// The repository (hypervisor/ and tests/guests/ live there).
    pub repo_root: PathBuf,
    /// Whether `KERNEL_ELF` VMs without `--module` get the test guests.
    pub test_guests: modules::TestGuests,
    /// Fail instead of writing a partial image when a module is missing (`run` needs the ISO).
    pub require_modules: bool,
}

/// Largest boot module accepted (kernel, ramdisk), in bytes.
pub const MAX_MODULE_BYTES: u64 = 1 << 30;

/// What [`build`] produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    pub dir: PathBuf,
    pub machine: Machine,
    pub manifest: ImageManifest,
}

/// `DIR/manifest.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageManifest {
    pub generator: &'static str,
    pub board: ManifestFile,
    pub scenario: ManifestFile,
    pub profile: &'static str,
    pub hypervisor: ManifestFile,
    /// `None` when a module is missing: then there is no ISO.
    pub iso: Option<String>,
    pub vms: Vec<ManifestVm>,
    pub modules: Vec<ManifestModule>,
    /// Modules the scenario names that the build was not given (their grub.cfg lines are to
    /// be filled in).
    pub missing_modules: Vec<MissingModule>,
    pub machine: Machine,
    pub default_emulator: Emulator,
    /// How to boot the ISO; `None` without an ISO.
    pub emulators: Option<Emulators>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MissingModule {
    pub tag: String,
    pub vm: String,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestVm {
    pub id: u32,
    pub name: String,
    pub load_order: Option<LoadOrder>,
    pub pcpus: Vec<u32>,
    pub memory_mb: Option<u64>,
    pub kern_mod: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestModule {
    pub tag: String,
    pub vm: String,
    /// Path inside the ISO.
    pub iso_path: String,
    /// Where the file came from.
    pub source: String,
    /// `user` (--module) or `test-guest`.
    pub origin: &'static str,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Emulators {
    pub qemu: Vec<String>,
    pub bochs: Vec<String>,
}

fn sha256_file(path: &Path) -> Result<(String, u64), ImageError> {
    crate::bounded::copy_hashed(path, &mut std::io::sink(), MAX_MODULE_BYTES).map_err(|source| {
        ImageError::ModuleUnreadable {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn absolute(p: &Path) -> Result<PathBuf, ImageError> {
    std::path::absolute(p).map_err(io_err(p))
}

/// `DIR.tmp`, beside `DIR`.
fn tmp_dir_of(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    out.with_file_name(name)
}

/// May `dir` be replaced? Yes if it does not exist, is empty, or holds a manifest we wrote.
fn replaceable(dir: &Path) -> Result<bool, ImageError> {
    match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(ImageError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
        Ok(mut entries) => {
            if entries.next().is_none() {
                return Ok(true);
            }
            let ours = crate::bounded::read(&dir.join(MANIFEST), 1 << 20)
                .ok()
                .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
                .is_some_and(|v| v["generator"] == GENERATOR);
            Ok(ours)
        }
    }
}

/// Builds the image; see the module documentation. Progress goes to `log`.
pub fn build(opts: &BuildOptions, log: &mut dyn FnMut(&str)) -> Result<BuildOutput, ImageError> {
    let board_path = absolute(&opts.board)?;
    let scenario_path = absolute(&opts.scenario)?;
    let out = absolute(&opts.out)?;
    for p in [&board_path, &scenario_path] {
        // A missing file is reported by validation, with its finding.
        if p.exists() && !p.is_file() {
            return Err(ImageError::NotRegularFile(p.clone()));
        }
    }

    // Every check on the input comes before anything is written.
    let report = validate(&board_path, &scenario_path, &ValidateOptions::default());
    let (Some(board), Some(scenario)) = (&report.board, &report.scenario) else {
        return Err(ImageError::Invalid(Box::new(report)));
    };
    if !report.valid {
        return Err(ImageError::Invalid(Box::new(report)));
    }
    let generated = gen::generate(&board_path, &scenario_path, &GenerateOptions::default())
        .map_err(|r| ImageError::Invalid(Box::new(r)))?;
    for u in crate::enforcement::unenforced(scenario)
        .into_iter()
        .chain(crate::enforcement::unisolated_dma(board, scenario))
        .chain(crate::enforcement::shared_requesters(board, scenario))
    {
        log(&format!("warning: {u}"));
    }
    let needs = modules::needed(scenario);
    for n in &needs {
        if n.tag
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'')
        {
            return Err(ImageError::BadTag(n.tag.clone()));
        }
    }
    let plan = modules::plan(scenario, &needs, &opts.modules, opts.test_guests)?;
    let missing: Vec<modules::Need> = plan
        .iter()
        .filter(|p| p.source == Source::Missing)
        .map(|p| p.need.clone())
        .collect();
    if opts.require_modules && !missing.is_empty() {
        return Err(ImageError::MissingModules(missing));
    }
    if !replaceable(&out)? {
        return Err(ImageError::NotOurs(out));
    }
    let mut machine = Machine::of_board(board);
    machine.single_thread_tcg = scenario
        .vm
        .iter()
        .any(|v| v.load_order == Some(LoadOrder::Service));

    let tmp = tmp_dir_of(&out);
    if tmp.exists() {
        if !tmp.join(IN_PROGRESS).exists() {
            return Err(ImageError::NotOurs(tmp));
        }
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        fs::write(tmp.join(IN_PROGRESS), b"").map_err(io_err(&tmp))?;
        let gen_dir = tmp.join(GEN_DIR);
        generated.write_to(&gen_dir).map_err(io_err(&gen_dir))?;
        log(&format!(
            "build: tables generated in {}",
            out.join(GEN_DIR).display()
        ));

        let elf = build_hypervisor(opts, &board_path, &scenario_path, log)?;
        let elf_out = tmp.join(ELF);
        fs::copy(&elf, &elf_out).map_err(io_err(&elf_out))?;

        let mut files = module_files(opts, &plan, &tmp, log)?;
        if let Some(f) = launch_file(board, scenario, &tmp)? {
            files.push(f);
        }
        let boot = write_iso(&tmp, &out, &elf_out, &files, &missing, log)?;
        if missing.is_empty() {
            fs::write(
                tmp.join(emulator::BOCHSRC),
                machine.bochsrc(&out.join(ISO), &out),
            )
            .map_err(io_err(&tmp))?;
            fs::write(tmp.join(emulator::BOCHS_CMDS), emulator::BOCHS_CMDS_TEXT)
                .map_err(io_err(&tmp))?;
        }

        let manifest = manifest(
            opts,
            &board_path,
            &scenario_path,
            &out,
            &elf_out,
            scenario,
            &machine,
            boot,
            &missing,
        )?;
        let mut json = serde_json::to_string_pretty(&manifest).expect("manifest serializes");
        json.push('\n');
        fs::write(tmp.join(MANIFEST), json).map_err(io_err(&tmp))?;
        fs::remove_file(tmp.join(IN_PROGRESS)).map_err(io_err(&tmp))?;
        Ok(manifest)
    })();
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    replace_dir(&tmp, &out)?;
    if missing.is_empty() {
        log(&format!("build: image in {}", out.display()));
    } else {
        for n in &missing {
            log(&format!(
                "build: warning: module `{}` ({}) was not given (--module {}=FILE)",
                n.tag,
                n.what(),
                n.tag
            ));
        }
        log(&format!(
            "build: hypervisor in {}; no ISO: {} module(s) missing; {} has a line to fill in for each",
            out.join(ELF).display(),
            missing.len(),
            out.join("grub.cfg").display()
        ));
    }
    Ok(BuildOutput {
        dir: out,
        machine,
        manifest,
    })
}

/// Moves `tmp` to `out`, replacing an earlier build there.
fn replace_dir(tmp: &Path, out: &Path) -> Result<(), ImageError> {
    if out.exists() {
        let mut name = out.file_name().unwrap_or_default().to_os_string();
        name.push(".old");
        let old = out.with_file_name(name);
        let _ = fs::remove_dir_all(&old);
        fs::rename(out, &old).map_err(io_err(out))?;
        fs::rename(tmp, out).map_err(io_err(out))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(tmp, out).map_err(io_err(out))?;
    }
    Ok(())
}

/// The cargo that runs us, when we run under cargo, else the one on PATH.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds hypervisor/ for x86_64-unknown-none with the tables of this board and scenario;
/// returns the executable's path.
fn build_hypervisor(
    opts: &BuildOptions,
    board: &Path,
    scenario: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, ImageError> {
    let hv = opts.repo_root.join("hypervisor");
    log(&format!(
        "build: cargo build of the hypervisor ({})",
        if opts.release { "release" } else { "debug" }
    ));
    let mut cmd = cargo();
    cmd.current_dir(&hv)
        .args([
            "build",
            "--bin",
            "acrn",
            "--target",
            "x86_64-unknown-none",
            "--message-format=json-render-diagnostics",
        ])
        .env("ACRN_BOARD", board)
        .env("ACRN_SCENARIO", scenario)
        // The tables come from the board and scenario only; the hypervisor's link flags come
        // from hypervisor/.cargo/config.toml, which RUSTFLAGS would replace.
        .env_remove("ACRN_TABLES_RS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if opts.release {
        cmd.arg("--release");
    }
    let output = cmd.output().map_err(|e| ImageError::Io {
        path: PathBuf::from("cargo"),
        source: e,
    })?;
    if !output.status.success() {
        return Err(ImageError::CommandFailed {
            what: "cargo build of the hypervisor".into(),
            status: output.status.to_string(),
        });
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "acrn")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .ok_or(ImageError::NoExecutable)
}

/// A module's file and where it goes on the ISO.
struct ModuleFile {
    planned: modules::Planned,
    path: PathBuf,
    iso_name: String,
}

/// Resolves each planned module to a file, building the test guests into `tmp/guests` when
/// one of them is needed.
fn module_files(
    opts: &BuildOptions,
    plan: &[modules::Planned],
    tmp: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ModuleFile>, ImageError> {
    let guests = tmp.join("guests");
    if plan
        .iter()
        .any(|p| matches!(p.source, Source::TestGuest(_)))
    {
        log("build: building the test guests (tests/guests/build.sh)");
        let script = opts.repo_root.join("tests/guests/build.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&guests)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .map_err(io_err(&script))?;
        if !status.success() {
            return Err(ImageError::CommandFailed {
                what: format!("{}", script.display()),
                status: status.to_string(),
            });
        }
    }
    let mut used: Vec<String> = vec![ELF.into()];
    let mut out = Vec::new();
    for p in plan {
        let path = match &p.source {
            Source::User(f) => absolute(f)?,
            Source::TestGuest(g) => guests.join(g),
            Source::Generated | Source::Missing => continue,
        };
        let base: String = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // The same file for two tags is copied once; a different file with the same name
        // gets the tag in front.
        let iso_name = match out.iter().find(|m: &&ModuleFile| m.path == path) {
            Some(m) => m.iso_name.clone(),
            None if used.contains(&base) => format!("{}-{base}", p.need.tag),
            None => base,
        };
        used.push(iso_name.clone());
        out.push(ModuleFile {
            planned: p.clone(),
            path,
            iso_name,
        });
    }
    Ok(out)
}

/// With post-launched VMs, the launch description for the reference Service VM, written to
/// `tmp/launch_vms` and passed as the module tagged `launch_vms`.
fn launch_file(
    board: &crate::board::Board,
    scenario: &Scenario,
    tmp: &Path,
) -> Result<Option<ModuleFile>, ImageError> {
    if !scenario
        .vm
        .iter()
        .any(|v| v.load_order == Some(LoadOrder::PostLaunched))
    {
        return Ok(None);
    }
    let mut desc =
        crate::launch::from_scenario(scenario).map_err(|e| ImageError::Launch(e.to_string()))?;
    // Validation allocated the same way already: this cannot fail where the build got here.
    let alloc = crate::alloc::allocate(board, scenario)
        .map_err(|_| ImageError::Launch("the resources could not be allocated".into()))?;
    crate::launch::with_devices(&mut desc, &alloc);
    let path = tmp.join(crate::launch::MODULE_TAG);
    fs::write(&path, desc.render()).map_err(io_err(&path))?;
    let service = scenario
        .vm
        .iter()
        .find(|v| v.load_order == Some(LoadOrder::Service));
    Ok(Some(ModuleFile {
        planned: modules::Planned {
            need: modules::Need {
                tag: crate::launch::MODULE_TAG.into(),
                vm_id: service.map_or(0, |v| v.id),
                vm_name: service.map_or_else(String::new, |v| v.name.clone()),
                kind: modules::ModuleKind::LaunchDescription,
            },
            source: Source::Generated,
        },
        path,
        iso_name: crate::launch::MODULE_TAG.into(),
    }))
}

/// One `module2` line of grub.cfg.
pub enum GrubModule {
    /// A file on the ISO, under /boot.
    File { file: String, tag: String },
    /// A module the build was not given: a line whose path the user fills in.
    Missing(modules::Need),
}

/// The grub.cfg: the hypervisor, then one module2 line per tag.
pub fn grub_cfg(modules: &[GrubModule]) -> String {
    let mut s = String::from(
        "set timeout=0\nset default=0\nmenuentry \"ACRN\" {\n  multiboot2 /boot/acrn.elf\n",
    );
    for m in modules {
        match m {
            GrubModule::File { file, tag } => s.push_str(&format!("  module2 /boot/{file} {tag}\n")),
            GrubModule::Missing(n) => s.push_str(&format!(
                "  # {}: not given to the build; fill in the path of {}\n  module2 /boot/FILL-IN-{} {}\n",
                n.tag,
                n.what(),
                n.tag,
                n.tag
            )),
        }
    }
    s.push_str("  boot\n}\n");
    s
}

/// Stages the modules (each read once, bounded), writes grub.cfg and, when no module is
/// missing, runs grub-mkrescue; returns the manifest's module entries.
fn write_iso(
    tmp: &Path,
    out: &Path,
    elf: &Path,
    files: &[ModuleFile],
    missing: &[modules::Need],
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ManifestModule>, ImageError> {
    if missing.is_empty() && !Path::new("/usr/lib/grub/i386-pc").is_dir() {
        return Err(ImageError::MissingTool {
            tool: "grub-pc-bin (/usr/lib/grub/i386-pc)".into(),
            hint: "apt-get install -y grub-pc-bin grub-common xorriso mtools".into(),
        });
    }
    let stage = tmp.join("iso-root");
    let boot = stage.join("boot");
    fs::create_dir_all(boot.join("grub")).map_err(io_err(&boot))?;
    fs::copy(elf, boot.join(ELF)).map_err(io_err(elf))?;
    let mut lines = Vec::new();
    let mut entries = Vec::new();
    let mut staged: Vec<(String, (String, u64))> = Vec::new();
    for m in files {
        let dest = boot.join(&m.iso_name);
        let (sha256, size) = match staged.iter().find(|(n, _)| *n == m.iso_name) {
            Some((_, h)) => h.clone(),
            None => {
                let mut f = fs::File::create(&dest).map_err(io_err(&dest))?;
                let h = crate::bounded::copy_hashed(&m.path, &mut f, MAX_MODULE_BYTES).map_err(
                    |source| ImageError::ModuleUnreadable {
                        path: m.path.clone(),
                        source,
                    },
                )?;
                staged.push((m.iso_name.clone(), h.clone()));
                h
            }
        };
        lines.push(GrubModule::File {
            file: m.iso_name.clone(),
            tag: m.planned.need.tag.clone(),
        });
        let (source, origin) = match &m.planned.source {
            // Test guests live in the output directory once it is renamed.
            Source::TestGuest(g) => (out.join("guests").join(g), "test-guest"),
            Source::User(_) => (m.path.clone(), "user"),
            Source::Generated | Source::Missing => (out.join(&m.iso_name), "generated"),
        };
        entries.push(ManifestModule {
            tag: m.planned.need.tag.clone(),
            vm: m.planned.need.vm_name.clone(),
            iso_path: format!("/boot/{}", m.iso_name),
            source: source.display().to_string(),
            origin,
            size,
            sha256,
        });
    }
    lines.extend(missing.iter().cloned().map(GrubModule::Missing));
    let cfg = grub_cfg(&lines);
    fs::write(boot.join("grub/grub.cfg"), &cfg).map_err(io_err(&boot))?;
    fs::write(tmp.join("grub.cfg"), &cfg).map_err(io_err(tmp))?;
    if missing.is_empty() {
        log("build: grub-mkrescue");
        mkrescue(&tmp.join(ISO), &stage)?;
    }
    fs::remove_dir_all(&stage).map_err(io_err(&stage))?;
    Ok(entries)
}

fn mkrescue(iso: &Path, stage: &Path) -> Result<(), ImageError> {
    let result = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(iso)
        .arg(stage)
        .stdin(Stdio::null())
        .output();
    let output = match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::MissingTool {
                tool: "grub-mkrescue".into(),
                hint: "apt-get install -y grub-pc-bin grub-common xorriso mtools".into(),
            })
        }
        r => r.map_err(io_err(Path::new("grub-mkrescue")))?,
    };
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(ImageError::CommandFailed {
            what: format!("grub-mkrescue: {}", err.trim()),
            status: output.status.to_string(),
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn manifest(
    opts: &BuildOptions,
    board: &Path,
    scenario_path: &Path,
    out: &Path,
    elf: &Path,
    scenario: &crate::scenario::Scenario,
    machine: &Machine,
    modules: Vec<ManifestModule>,
    missing: &[modules::Need],
) -> Result<ImageManifest, ImageError> {
    let file = |p: &Path, shown: &Path| -> Result<ManifestFile, ImageError> {
        Ok(ManifestFile {
            path: shown.display().to_string(),
            sha256: sha256_file(p)?.0,
        })
    };
    let mut vms: Vec<ManifestVm> = scenario
        .vm
        .iter()
        .map(|v| ManifestVm {
            id: v.id,
            name: v.name.clone(),
            load_order: v.load_order,
            pcpus: v
                .cpu_affinity
                .as_ref()
                .map(|a| a.pcpu.iter().map(|p| p.pcpu_id).collect())
                .unwrap_or_default(),
            memory_mb: v.memory.as_ref().and_then(|m| m.size),
            kern_mod: v.os_config.as_ref().and_then(|o| o.kern_mod.clone()),
        })
        .collect();
    vms.sort_by_key(|v| v.id);
    Ok(ImageManifest {
        generator: GENERATOR,
        board: file(board, board)?,
        scenario: file(scenario_path, scenario_path)?,
        profile: if opts.release { "release" } else { "debug" },
        hypervisor: file(elf, &out.join(ELF))?,
        iso: missing
            .is_empty()
            .then(|| out.join(ISO).display().to_string()),
        vms,
        modules,
        missing_modules: missing
            .iter()
            .map(|n| MissingModule {
                tag: n.tag.clone(),
                vm: n.vm_name.clone(),
                what: n.what(),
            })
            .collect(),
        machine: machine.clone(),
        default_emulator: machine.default_emulator(),
        emulators: missing.is_empty().then(|| Emulators {
            qemu: emulator::command_line(Emulator::Qemu, machine, out),
            bochs: emulator::command_line(Emulator::Bochs, machine, out),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_names_each_module_with_its_tag() {
        let file = |f: &str, t: &str| GrubModule::File {
            file: f.into(),
            tag: t.into(),
        };
        let cfg = grub_cfg(&[
            file("hello.elf", "PRE_VM0_kernel"),
            file("rogue.elf", "PRE_VM1_kernel"),
        ]);
        assert!(cfg.contains("  multiboot2 /boot/acrn.elf\n"));
        assert!(cfg.contains("  module2 /boot/hello.elf PRE_VM0_kernel\n  module2 /boot/rogue.elf PRE_VM1_kernel\n  boot\n"));
        let cfg = grub_cfg(&[GrubModule::Missing(modules::Need {
            tag: "Linux_bzImage".into(),
            vm_id: 0,
            vm_name: "PRE_VM0".into(),
            kind: modules::ModuleKind::Kernel(crate::scenario::KernType::BzImage),
        })]);
        assert!(
            cfg.contains("  # Linux_bzImage: not given to the build; fill in the path of PRE_VM0's KERNEL_BZIMAGE kernel\n  module2 /boot/FILL-IN-Linux_bzImage Linux_bzImage\n"),
            "{cfg}"
        );
    }

    #[test]
    fn only_empty_or_our_directories_are_replaced() {
        let base = std::env::temp_dir().join(format!("acrn-image-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        assert!(replaceable(&base.join("absent")).unwrap());
        fs::create_dir_all(base.join("empty")).unwrap();
        assert!(replaceable(&base.join("empty")).unwrap());
        fs::create_dir_all(base.join("user")).unwrap();
        fs::write(base.join("user/notes.txt"), "keep me").unwrap();
        assert!(!replaceable(&base.join("user")).unwrap());
        fs::create_dir_all(base.join("ours")).unwrap();
        fs::write(
            base.join("ours").join(MANIFEST),
            format!("{{\"generator\":\"{GENERATOR}\"}}"),
        )
        .unwrap();
        assert!(replaceable(&base.join("ours")).unwrap());
        assert_eq!(tmp_dir_of(Path::new("/a/out")), Path::new("/a/out.tmp"));
        fs::remove_dir_all(&base).unwrap();
    }
}
