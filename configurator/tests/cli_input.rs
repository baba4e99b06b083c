//! Input files that are not regular files, and the command line's own description.
//! Every file is read through a bounded reader (configurator/src/bounded.rs): an endless device
//! is cut at the limit plus one byte with an F001 finding, and a FIFO or /dev/stdin that ends
//! within the limit is read like a file. A run that does not end within its deadline is
//! killed and fails (the bug this guards against never returned).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_acrn-configurator");
const DEADLINE: Duration = Duration::from_secs(120);

fn configs(file: &str) -> PathBuf {
    common::repo().join("configs/qemu-epyc").join(file)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("acrn-cli-input-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits for the child, killing it and failing at the deadline.
fn finish(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {DEADLINE:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn validate(board: &Path, scenario: &Path, stdin: Stdio) -> Child {
    Command::new(BIN)
        .args(["validate", "--board"])
        .arg(board)
        .arg("--scenario")
        .arg(scenario)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn mkfifo(path: &Path) {
    let s = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(s.success(), "mkfifo {}", path.display());
}

/// Writes `data` into the FIFO from a thread (opening blocks until the reader opens it); with
/// `endless`, repeats it until the reader goes away.
fn feed(fifo: &Path, data: Vec<u8>, endless: bool) -> std::thread::JoinHandle<()> {
    let fifo = fifo.to_path_buf();
    std::thread::spawn(move || {
        let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
            return;
        };
        loop {
            if f.write_all(&data).is_err() || !endless {
                return;
            }
        }
    })
}

fn assert_f001_too_large(o: &Output, file: &Path) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("F001"), "no F001 in:\n{stderr}");
    assert!(
        stderr.contains(&file.display().to_string()) && stderr.contains("larger than the"),
        "the message should name the file and the limit:\n{stderr}"
    );
}

#[test]
fn dev_zero_as_board_or_scenario_is_refused_at_the_limit() {
    let zero = Path::new("/dev/zero");
    let o = finish(
        validate(zero, &configs("partitioned.xml"), Stdio::null()),
        "validate --board /dev/zero",
    );
    assert_f001_too_large(&o, zero);
    let o = finish(
        validate(&configs("qemu-epyc.xml"), zero, Stdio::null()),
        "validate --scenario /dev/zero",
    );
    assert_f001_too_large(&o, zero);
}

#[test]
fn fifos_within_the_limit_are_read_like_files() {
    let d = tmpdir("fifo");
    let (board, scenario) = (d.join("board.xml"), d.join("scenario.xml"));
    mkfifo(&board);
    mkfifo(&scenario);
    let child = validate(&board, &scenario, Stdio::null());
    let writers = [
        feed(
            &board,
            std::fs::read(configs("qemu-epyc.xml")).unwrap(),
            false,
        ),
        feed(
            &scenario,
            std::fs::read(configs("partitioned.xml")).unwrap(),
            false,
        ),
    ];
    let o = finish(child, "validate with FIFOs");
    for w in writers {
        w.join().unwrap();
    }
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{stderr}");
    assert!(stderr.contains("valid"), "{stderr}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn an_endless_fifo_is_refused_at_the_limit() {
    let d = tmpdir("endless");
    let scenario = d.join("scenario.xml");
    mkfifo(&scenario);
    let child = validate(&configs("qemu-epyc.xml"), &scenario, Stdio::null());
    let writer = feed(&scenario, b"<acrn-config>".repeat(4096), true);
    let o = finish(child, "validate with an endless FIFO");
    // The writer stops when the configurator closes its end (broken pipe).
    writer.join().unwrap();
    assert_f001_too_large(&o, &scenario);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn dev_stdin_is_read_like_a_file() {
    let mut child = validate(
        &configs("qemu-epyc.xml"),
        Path::new("/dev/stdin"),
        Stdio::piped(),
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(&std::fs::read(configs("partitioned.xml")).unwrap())
        .unwrap();
    drop(stdin);
    let o = finish(child, "validate --scenario /dev/stdin");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "stderr:\n{stderr}");
}

#[test]
fn help_describes_every_command_and_version_names_the_acrn_release() {
    let o = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{help}");
    assert!(
        !help.contains("Validate and convert ACRN board and scenario configurations"),
        "the old one-line description:\n{help}"
    );
    for word in [
        "validate", "convert", "generate", "build", "run", "QEMU", "Bochs",
    ] {
        assert!(help.contains(word), "`{word}` not in --help:\n{help}");
    }
    for cmd in [
        "validate", "schema", "convert", "generate", "explain", "build", "run",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("no line for `{cmd}` in --help:\n{help}"));
        assert!(
            line.trim_start()[cmd.len()..].trim().len() > 20,
            "`{cmd}` is not described: {line}"
        );
    }
    let o = Command::new(BIN).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(
        version.starts_with(&format!("acrn-configurator {} ", env!("CARGO_PKG_VERSION")))
            && version.contains("ACRN v3.3"),
        "{version}"
    );
}

/// `build` reads the board and scenario several times (validation, generation, the
/// hypervisor's build script): a FIFO or device there is a usage error, not a hang.
#[test]
fn build_refuses_a_fifo_or_device_as_board_or_scenario() {
    let d = tmpdir("build-fifo");
    let fifo = d.join("scenario.xml");
    mkfifo(&fifo);
    let out = d.join("out");
    for (board, scenario) in [
        (configs("qemu-epyc.xml"), fifo.clone()),
        (PathBuf::from("/dev/zero"), configs("partitioned.xml")),
    ] {
        let child = Command::new(BIN)
            .args(["build", "--board"])
            .arg(&board)
            .arg("--scenario")
            .arg(&scenario)
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let o = finish(child, "build with a FIFO or device");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("not a regular file"), "{stderr}");
        assert!(!out.exists());
    }
    std::fs::remove_dir_all(&d).ok();
}
