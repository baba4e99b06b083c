//! Harness for the system tests: runs the real `acrn-configurator` binary (`build`, `run`)
//! and checks the serial transcript.
//!
//! * The binary is built with `cargo build -p acrn-configurator` (same cargo, same target
//!   directory as the tests) and located from cargo's JSON messages, so a fresh clone needs
//!   nothing but `cargo test -p acrn-system-tests`.
//! * Every emulator run has a deadline; a hang is a failure. The run is stopped early once the
//!   test has seen what it waits for (or a line that already decides failure).
//! * A missing emulator or tool is a failure that says how to install it, never a skip.

pub mod debian;
pub mod initramfs;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str = "install the emulators with: sudo apt-get install -y qemu-system-x86 bochs bochsbios vgabios grub-pc-bin grub-common xorriso mtools (or run scripts/setup.sh)";

/// The repository root (tests/system/../..).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("tests/system is two levels below the root")
        .to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The target directory cargo uses for this workspace.
pub fn target_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = cargo()
            .current_dir(repo_root())
            .args(["metadata", "--format-version=1", "--no-deps"])
            .output()
            .expect("run cargo metadata");
        assert!(out.status.success(), "cargo metadata failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
        PathBuf::from(v["target_directory"].as_str().expect("target_directory"))
    })
    .clone()
}

/// Builds `acrn-configurator` once per test process and returns its path.
pub fn configurator() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = cargo()
            .current_dir(repo_root())
            .args([
                "build",
                "-p",
                "acrn-configurator",
                "--bin",
                "acrn-configurator",
                "--message-format=json-render-diagnostics",
            ])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build -p acrn-configurator");
        assert!(
            out.status.success(),
            "cargo build -p acrn-configurator failed"
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["reason"] == "compiler-artifact")
            .find_map(|v| {
                let exe = v["executable"].as_str()?;
                exe.ends_with("/acrn-configurator")
                    .then(|| PathBuf::from(exe))
            })
            .expect("cargo reported no acrn-configurator executable")
    })
    .clone()
}

/// Builds `acrn-dm` statically linked (for a Service VM initramfs, which has no C library)
/// once per test process and returns its path.
pub fn acrn_dm_static() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = "x86_64-unknown-linux-gnu";
        let status = cargo()
            .current_dir(repo_root())
            .args(["build", "-p", "acrn-dm", "--release", "--target", target])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .stderr(Stdio::inherit())
            .status()
            .expect("run cargo build -p acrn-dm");
        assert!(status.success(), "cargo build -p acrn-dm (static) failed");
        let bin = target_dir().join(target).join("release/acrn-dm");
        assert!(bin.is_file(), "no acrn-dm at {}", bin.display());
        bin
    })
    .clone()
}

/// `acrn-configurator generate` for a board and scenario of `configs/` into `out`.
pub fn generate(board: &str, scenario: &str, out: &Path) -> Output {
    configurator_cmd()
        .args([
            "generate",
            "--board",
            board,
            "--scenario",
            scenario,
            "--out",
        ])
        .arg(out)
        .stdin(Stdio::null())
        .output()
        .expect("run acrn-configurator generate")
}

/// Fails (with the install hint) unless every tool is on PATH.
pub fn require_tools(tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in tools {
        let found = std::env::split_paths(&path).any(|d| d.join(tool).is_file());
        assert!(found, "`{tool}` is not installed: {INSTALL_HINT}");
    }
}

/// ACRN's corpus (`$ACRN_CORPUS` or `../shared/acrn-corpus` beside the repository), or `None`
/// after a SKIP line on the real stderr (the harness hides `eprintln!` of passing tests).
/// With `ACRN_REQUIRE_CORPUS=1` (CI) a missing corpus fails.
pub fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("ACRN_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/acrn-corpus"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("ACRN_REQUIRE_CORPUS").as_deref() != Ok("1"),
        "ACRN_REQUIRE_CORPUS=1 but the corpus is not at {}",
        dir.display()
    );
    say(&format!(
        "SKIP: ACRN corpus not found at {} (set ACRN_CORPUS); its pairs were not built",
        dir.display()
    ));
    None
}

/// A line on the real stderr, shown by `cargo test` also for passing tests.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// (board file, scenario file) for every folder `D` of `root` holding `D.xml`: each other
/// `.xml` and `.toml` file of `D` is a scenario. Sorted; a new file joins without a code change.
pub fn pairs_in(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        let board = d.join(format!("{name}.xml"));
        if !board.is_file() {
            continue;
        }
        let mut scenarios: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| *p != board && p.extension().is_some_and(|e| e == "xml" || e == "toml"))
            .collect();
        scenarios.sort();
        out.extend(scenarios.into_iter().map(|s| (board.clone(), s)));
    }
    out
}

/// `acrn-configurator validate` of a pair: (exit status, stderr).
pub fn validate(board: &Path, scenario: &Path) -> (Option<i32>, String) {
    let o = configurator_cmd()
        .args(["validate", "--board"])
        .arg(board)
        .arg("--scenario")
        .arg(scenario)
        .stdin(Stdio::null())
        .output()
        .expect("run acrn-configurator validate");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A fresh directory for one test's outputs, under the target directory.
pub fn work_dir(name: &str) -> PathBuf {
    let d = target_dir().join("system-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create work dir");
    d
}

/// `acrn-configurator build ...` with the given extra arguments; returns its output.
pub fn build(board: &str, scenario: &str, out: &Path, extra: &[String]) -> Output {
    configurator_cmd()
        .args(["build", "--board", board, "--scenario", scenario, "--out"])
        .arg(out)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run acrn-configurator build")
}

fn configurator_cmd() -> Command {
    let mut c = Command::new(configurator());
    c.current_dir(repo_root());
    c
}

/// One console line.
#[derive(Debug, Clone)]
pub struct Line {
    pub text: String,
    /// Seconds since the emulator started.
    pub at: f64,
}

/// The console of a run.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    pub lines: Vec<Line>,
    /// The configurator's stderr (build progress, the emulator command line, how it ended).
    pub stderr: String,
    /// Why the run ended: "condition", "exited", or "deadline".
    pub ended_by: &'static str,
    /// Seconds from the emulator's start to the end of the run.
    pub seconds: f64,
    /// A last line the emulator was still printing when the run stopped it (a condition was
    /// met, or the deadline passed): shown by `dump`, never judged, since its end is missing.
    pub cut_off: String,
}

impl Transcript {
    /// Console lines without terminal escapes and carriage returns.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|l| l.text.as_str())
    }

    /// The index of the first line equal to `line`.
    pub fn find(&self, line: &str) -> Option<usize> {
        self.texts().position(|t| t == line)
    }

    /// The index of the first line starting with `prefix`.
    pub fn find_prefix(&self, prefix: &str) -> Option<usize> {
        self.texts().position(|t| t.starts_with(prefix))
    }

    /// Indexes of the lines a VM printed (prefix `[NAME] `).
    pub fn vm_lines(&self, vm: &str) -> Vec<usize> {
        let p = format!("[{vm}] ");
        self.texts()
            .enumerate()
            .filter(|(_, t)| t.starts_with(&p))
            .map(|(i, _)| i)
            .collect()
    }

    /// The whole console (kept as `console.txt` next to each run's image).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            s.push_str(&format!("{:8.3} {}\n", l.at, l.text));
        }
        self.push_tail(&mut s);
        s
    }

    /// The console for a failure message: a line that differs from the previous line of the
    /// same VM only in its digits (a guest's `tick N`) is counted instead of repeated, so that
    /// the lines that matter fit the part of a CI log that is shown.
    pub fn summary(&self) -> String {
        // Per VM prefix: the digit-free shape of its last line shown, and the lines like it
        // not shown since (how many, the last one).
        let mut last: HashMap<&str, (String, usize, &Line)> = HashMap::new();
        let mut s = String::new();
        let flush = |s: &mut String, skipped: usize, l: &Line| match skipped {
            0 => {}
            1 => s.push_str(&format!("{:8.3} {}\n", l.at, l.text)),
            n => s.push_str(&format!("{:8.3} ... {n} more like: {}\n", l.at, l.text)),
        };
        for l in &self.lines {
            let (prefix, shape) = line_shape(&l.text);
            match last.get_mut(prefix) {
                Some((seen, skipped, at)) if *seen == shape => {
                    *skipped += 1;
                    *at = l;
                    continue;
                }
                Some((_, skipped, at)) => flush(&mut s, *skipped, at),
                None => {}
            }
            s.push_str(&format!("{:8.3} {}\n", l.at, l.text));
            last.insert(prefix, (shape, 0, l));
        }
        let mut pending: Vec<_> = last.into_values().filter(|v| v.1 > 0).collect();
        pending.sort_by(|a, b| a.2.at.total_cmp(&b.2.at));
        for (_, skipped, l) in pending {
            flush(&mut s, skipped, l);
        }
        self.push_tail(&mut s);
        s
    }

    fn push_tail(&self, s: &mut String) {
        if !self.cut_off.is_empty() {
            s.push_str(&format!("   (cut) {}\n", self.cut_off));
        }
        s.push_str(&format!(
            "--- ended by {} after {:.1}s; configurator stderr:\n{}",
            self.ended_by, self.seconds, self.stderr
        ));
    }
}

/// A console line's VM prefixes (`[SERVICE_VM] [POST_VM1] `) and its text after them with
/// every run of digits as `#`.
fn line_shape(text: &str) -> (&str, String) {
    let mut end = 0;
    while text[end..].starts_with('[') {
        match text[end..].find("] ") {
            Some(i) => end += i + 2,
            None => break,
        }
    }
    let mut shape = String::with_capacity(text.len() - end);
    for c in text[end..].chars() {
        if !c.is_ascii_digit() {
            shape.push(c);
        } else if !shape.ends_with('#') {
            shape.push('#');
        }
    }
    (&text[..end], shape)
}

/// What a terminal shows of one line: a carriage return goes back to its start (the shell
/// redraws the line being typed that way), a backspace one column, `ESC [ K` erases to the
/// end; other ANSI escape sequences (SeaBIOS and GRUB draw with them) are dropped.
pub fn clean(line: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(line.len());
    let mut col = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            // CSI sequences (ESC [ ... letter) and two-byte ones like ESC c (reset).
            '\u{1b}' => {
                if chars.next() == Some('[') {
                    let last = chars.by_ref().find(|c| c.is_ascii_alphabetic());
                    if last == Some('K') {
                        out.truncate(col);
                    }
                }
            }
            '\r' => col = 0,
            '\u{8}' => col = col.saturating_sub(1),
            c => {
                match out.get_mut(col) {
                    Some(o) => *o = c,
                    None => out.push(c),
                }
                col += 1;
            }
        }
    }
    out.into_iter().collect()
}

/// Options of [`run`].
pub struct RunSpec<'a> {
    pub board: &'a str,
    pub scenario: &'a str,
    pub out: &'a Path,
    pub extra: Vec<String>,
    /// Time for the build step before the emulator starts.
    pub build_limit: Duration,
    /// Time the emulator may run.
    pub boot_limit: Duration,
}

/// Runs `acrn-configurator run` and collects its console until `done` says the transcript
/// is complete (or decided), the run ends, or a deadline passes. The configurator runs in a
/// process group of its own, and the whole group (the emulator with it) is killed at the end.
pub fn run(spec: &RunSpec, done: impl Fn(&Transcript) -> bool) -> Transcript {
    let mut cmd = configurator_cmd();
    cmd.args([
        "run",
        "--board",
        spec.board,
        "--scenario",
        spec.scenario,
        "--out",
    ])
    .arg(spec.out)
    // The configurator's own limit is a backstop behind ours.
    .arg("--timeout")
    .arg(format!("{}", spec.boot_limit.as_secs() + 30))
    .args(&spec.extra)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().expect("start acrn-configurator run");
    let state = Arc::new(Mutex::new(Transcript::default()));
    let boot_start: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));

    let stderr = child.stderr.take().expect("piped");
    let (st, bs) = (state.clone(), boot_start.clone());
    let err_thread = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // The emulator's command line (not the later `run: qemu exited ...`).
            if line.starts_with("run: qemu") || line.starts_with("run: bochs") {
                bs.lock().unwrap().get_or_insert_with(Instant::now);
            }
            let mut t = st.lock().unwrap();
            t.stderr.push_str(&line);
            t.stderr.push('\n');
        }
    });
    let stdout = child.stdout.take().expect("piped");
    let (st, bs) = (state.clone(), boot_start.clone());
    let out_thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        while reader
            .read_until(b'\n', &mut buf)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            if buf.last() != Some(&b'\n') {
                st.lock().unwrap().cut_off = clean(&String::from_utf8_lossy(&buf));
                break;
            }
            let text = clean(String::from_utf8_lossy(&buf).trim_end_matches('\n'));
            buf.clear();
            let at = bs
                .lock()
                .unwrap()
                .map_or(0.0, |s| s.elapsed().as_secs_f64());
            st.lock().unwrap().lines.push(Line { text, at });
        }
    });

    let started = Instant::now();
    let ended_by = loop {
        std::thread::sleep(Duration::from_millis(100));
        if done(&state.lock().unwrap()) {
            break "condition";
        }
        if let Ok(Some(_)) = child.try_wait() {
            break "exited";
        }
        let over = match *boot_start.lock().unwrap() {
            Some(s) => s.elapsed() > spec.boot_limit,
            None => started.elapsed() > spec.build_limit,
        };
        if over {
            break "deadline";
        }
    };
    kill_group(&mut child);
    let _ = out_thread.join();
    let _ = err_thread.join();
    let mut t = state.lock().unwrap().clone();
    t.ended_by = ended_by;
    // The emulator ended by itself: its last line, even without a newline, is complete.
    if ended_by == "exited" && !t.cut_off.is_empty() {
        let at = t.lines.last().map_or(0.0, |l| l.at);
        let text = std::mem::take(&mut t.cut_off);
        t.lines.push(Line { text, at });
    }
    t.seconds = boot_start
        .lock()
        .unwrap()
        .map_or(0.0, |s| s.elapsed().as_secs_f64());
    // Kept next to the image for a look after the run, whether the test passes or not.
    if let Some(dir) = spec.out.parent() {
        let _ = std::fs::write(dir.join("console.txt"), t.dump());
    }
    t
}

fn kill_group(child: &mut Child) {
    // SIGTERM to the group lets the configurator's emulator die with it; then make sure.
    let pgid = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &pgid]).status();
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
    let _ = child.wait();
}

/// Whether the hypervisor stopped VM `vm` for anything but its guest being done (every vCPU
/// halted with interrupts disabled, which ends a VM normally).
pub fn stopped_abnormally(t: &Transcript, vm: &str) -> bool {
    let stopped = format!(" {vm} stopped: ");
    t.texts().any(|l| {
        l.starts_with("[hv] VM ") && l.contains(&stopped) && !l.ends_with("(the guest is done)")
    })
}

/// Panics with the transcript unless `cond`.
#[track_caller]
pub fn check(t: &Transcript, cond: bool, what: &str) {
    assert!(
        cond,
        "{what}\n--- console (similar lines counted; all of it in console.txt by the image):\n{}\n--- failed: {what}",
        t.summary()
    );
}

/// Fails the test unless a line starts with each of `prefixes`.
#[track_caller]
pub fn check_prefixes<S: AsRef<str>>(t: &Transcript, prefixes: &[S]) {
    for p in prefixes {
        let p = p.as_ref();
        check(t, t.find_prefix(p).is_some(), &format!("no `{p}` line"));
    }
}

/// A run's end: every line of `verdicts` (prefixes) printed, the hypervisor failed, or a VM
/// stopped for another reason than having finished.
pub fn decided_by<'a>(verdicts: &'a [&'a str]) -> impl Fn(&Transcript) -> bool + 'a {
    move |t| {
        let has = |p: &str| t.find_prefix(p).is_some();
        has("[hv] PANIC")
            || has("[hv] FATAL")
            || verdicts.iter().all(|v| has(v))
            || t.texts()
                .any(|l| l.contains(" stopped: ") && !l.contains("(the guest is done)"))
    }
}

/// A scenario's `<IVSHMEM>` with one hypervisor-provided 2 MB region `name` shared by
/// `members` (VM name, and vBDF or None for the allocator's).
pub fn ivshmem_region_xml(name: &str, members: &[(&str, Option<&str>)]) -> String {
    let vms: String = members
        .iter()
        .map(|(vm, vbdf)| {
            let vbdf = vbdf.map_or(String::new(), |b| format!("<VBDF>{b}</VBDF>"));
            format!("<IVSHMEM_VM><VM_NAME>{vm}</VM_NAME>{vbdf}</IVSHMEM_VM>")
        })
        .collect();
    format!(
        "<IVSHMEM><IVSHMEM_REGION><NAME>{name}</NAME><PROVIDED_BY>Hypervisor</PROVIDED_BY>\
         <IVSHMEM_SIZE>2</IVSHMEM_SIZE><IVSHMEM_VMS>{vms}</IVSHMEM_VMS></IVSHMEM_REGION>\
         </IVSHMEM>"
    )
}

/// A scenario's `<vuart_connections>` with one PCI connection `link` between VMs `a` and `b`.
pub fn pci_vuart_link_xml(a: &str, b: &str) -> String {
    format!(
        "<vuart_connections><vuart_connection><name>link</name><type>pci</type>\
         <endpoint><vm_name>{a}</vm_name></endpoint><endpoint><vm_name>{b}</vm_name></endpoint>\
         </vuart_connection></vuart_connections>"
    )
}

/// configs/qemu-epyc/hybrid.xml (PRE_VM0, the Service VM, POST_VM1) with `from` replaced by
/// `to` once and PRE_VM0's and the Service VM's boot arguments extended by `pre_args` and
/// `service_args`.
pub fn hybrid_variant(
    text: &str,
    from: &str,
    to: &str,
    pre_args: &str,
    service_args: &str,
) -> String {
    let args = "<bootargs>console=ttyS0</bootargs>";
    assert_eq!(text.matches(args).count(), 2, "hybrid.xml's boot arguments");
    assert_eq!(
        text.matches(from).count(),
        1,
        "hybrid.xml has no single `{from}`"
    );
    // PRE_VM0 comes first, then the Service VM.
    text.replacen(from, to, 1)
        .replacen(
            args,
            &format!("<bootargs>console=ttyS0 {pre_args}</bootargs>"),
            1,
        )
        .replacen(
            args,
            &format!("<bootargs>console=ttyS0 {service_args}</bootargs>"),
            1,
        )
}

/// One emulator at a time within a test binary: two emulators share two cores.
static EMULATOR: Mutex<()> = Mutex::new(());

/// The program that runs `emulator` (`qemu` or `bochs`).
pub fn emulator_binary(emulator: &str) -> &'static str {
    match emulator {
        "qemu" => "qemu-system-x86_64",
        _ => "bochs",
    }
}

/// The test guest `name` (tests/guests), all of them built once per test binary.
pub fn guest_elf(name: &str) -> PathBuf {
    static GUESTS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let out = GUESTS.get_or_init(|| {
        let out = target_dir().join("system-tests").join("guests");
        let status = Command::new(repo_root().join("tests/guests/build.sh"))
            .arg(&out)
            .status()
            .expect("run tests/guests/build.sh");
        assert!(status.success(), "tests/guests/build.sh failed");
        out
    });
    out.join(format!("{name}.elf"))
}

/// Builds `scenario` for `board` with the `platform` guest as the kernel of each VM of `vms`
/// and boots it on `emulator` until every VM has stopped or the hypervisor failed, for at most
/// `limit` seconds.
/// `run`'s extra arguments for a QEMU boot of a scenario whose Linux VMs take the modules
/// `Linux_bzImage` and `Linux_initrd`.
pub fn qemu_linux_modules(kernel: &Path, initrd: &Path) -> Vec<String> {
    linux_modules("qemu", kernel, initrd)
}

/// `run` arguments for `emulator` with the Linux kernel and initrd as the boot modules
/// Linux_bzImage and Linux_initrd.
pub fn linux_modules(emulator: &str, kernel: &Path, initrd: &Path) -> Vec<String> {
    vec![
        "--emulator".into(),
        emulator.into(),
        "--module".into(),
        format!("Linux_bzImage={}", kernel.display()),
        "--module".into(),
        format!("Linux_initrd={}", initrd.display()),
    ]
}

/// Boots a variant of one of configs/qemu-epyc's scenarios (`edit` turns its text into the
/// variant) with the reference guests in QEMU, until `done` or `boot_limit` seconds.
pub fn run_qemu_variant(
    test: &str,
    scenario: &str,
    edit: impl FnOnce(&str) -> String,
    boot_limit: u64,
    done: impl Fn(&Transcript) -> bool,
) -> Transcript {
    run_qemu_variant_with(test, scenario, edit, &[], boot_limit, done)
}

/// [`run_qemu_variant`] with VMs' kernels given as `(VM name, test guest)`: e.g.
/// `("POST_VM1", "platform")` boots tests/guests' `platform` there.
pub fn run_qemu_variant_with(
    test: &str,
    scenario: &str,
    edit: impl FnOnce(&str) -> String,
    kernels: &[(&str, &str)],
    boot_limit: u64,
    done: impl Fn(&Transcript) -> bool,
) -> Transcript {
    run_variant_with("qemu-epyc", test, scenario, edit, kernels, boot_limit, done)
}

/// [`run_qemu_variant_with`] for any board of configs/, on the emulator its board names
/// (`qemu-epyc` QEMU, `bochs-tigerlake` Bochs).
pub fn run_variant_with(
    board: &str,
    test: &str,
    scenario: &str,
    edit: impl FnOnce(&str) -> String,
    kernels: &[(&str, &str)],
    boot_limit: u64,
    done: impl Fn(&Transcript) -> bool,
) -> Transcript {
    let emulator = if board.starts_with("bochs") {
        "bochs"
    } else {
        "qemu"
    };
    let _one = EMULATOR.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(&[emulator_binary(emulator), "grub-mkrescue", "xorriso"]);
    let dir = work_dir(test);
    let src = repo_root().join("configs").join(board).join(scenario);
    let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let path = dir.join(scenario);
    std::fs::write(&path, edit(&text)).expect("write the scenario variant");
    let scenario = path.display().to_string();
    let out = dir.join("image");
    let mut extra: Vec<String> = vec!["--emulator".into(), emulator.into()];
    for (vm, guest) in kernels {
        extra.push("--module".into());
        extra.push(format!("{vm}_kernel={}", guest_elf(guest).display()));
    }
    run(
        &RunSpec {
            board,
            scenario: &scenario,
            out: &out,
            extra,
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(boot_limit),
        },
        done,
    )
}

pub fn run_platform_vms(
    test: &str,
    board: &str,
    emulator: &str,
    scenario: &str,
    vms: &[&str],
    limit: u64,
) -> Transcript {
    let _one = EMULATOR.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(&[emulator_binary(emulator), "grub-mkrescue", "xorriso"]);
    let elf = guest_elf("platform").display().to_string();
    // Only the image's folder is renewed: the caller may keep its scenario next to it.
    let out = target_dir().join("system-tests").join(test).join("image");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.parent().expect("a parent")).expect("create work dir");
    let mut extra = vec!["--emulator".into(), emulator.into()];
    for vm in vms {
        extra.push("--module".into());
        extra.push(format!("{vm}_kernel={elf}"));
    }
    let started = Instant::now();
    let t = run(
        &RunSpec {
            board,
            scenario,
            out: &out,
            extra,
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(limit),
        },
        |t| {
            let has = |p: &str| t.find_prefix(p).is_some();
            has("[hv] every VM has stopped") || has("[hv] PANIC") || has("[hv] FATAL")
        },
    );
    eprintln!(
        "{test}: {} lines, ended by {} after {:.1}s (build and emulation)",
        t.lines.len(),
        t.ended_by,
        started.elapsed().as_secs_f64()
    );
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn clean_drops_escapes_and_carriage_returns() {
        assert_eq!(
            super::clean("\u{1b}c\u{1b}[?7l\u{1b}[2J\u{1b}[0mSeaBIOS\r"),
            "SeaBIOS"
        );
        assert_eq!(super::clean("[hv] x"), "[hv] x");
        // The shell's line being typed, taken off for a VM's line and drawn again.
        assert_eq!(
            super::clean("ACRN:\\> vm_l\r\u{1b}[K[VM0] boot\r"),
            "[VM0] boot"
        );
        assert_eq!(super::clean("ACRN:\\> intx\u{8}\u{1b}[K"), "ACRN:\\> int");
        assert_eq!(super::clean("abcd\rxy"), "xycd");
    }

    #[test]
    fn summary_counts_lines_that_differ_only_in_digits() {
        let texts = [
            "[A] [B] tick 1",
            "[A] other",
            "[A] [B] tick 2",
            "[A] [B] tick 3",
            "[A] [B] tick 4",
            "[A] [B] verdict: PASS",
            "[C] cpu 0 up",
            "[C] cpu 1 up",
        ];
        let t = super::Transcript {
            lines: texts
                .iter()
                .enumerate()
                .map(|(i, text)| super::Line {
                    text: text.to_string(),
                    at: i as f64,
                })
                .collect(),
            ..Default::default()
        };
        let summary = t.summary();
        let shown: Vec<&str> = summary
            .lines()
            .take_while(|l| !l.starts_with("---"))
            .map(|l| l[9..].trim_start())
            .collect();
        assert_eq!(
            shown,
            [
                "[A] [B] tick 1",
                "[A] other",
                "... 3 more like: [A] [B] tick 4",
                "[A] [B] verdict: PASS",
                "[C] cpu 0 up",
                "[C] cpu 1 up",
            ]
        );
        assert_eq!(t.dump().lines().count(), texts.len() + 1);
    }
}
