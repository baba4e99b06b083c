//! `acrn-configurator inspect` without root on this machine: it says what it could not read
//! (on stderr) and still writes a board file that lists the same in its header comment and
//! loads in our board reader. Run as root, the test drops to `nobody` with setpriv
//! (util-linux); run as another user, it inspects as that user.

use std::path::Path;
use std::process::Command;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn non_root_inspect_reports_what_it_could_not_read() {
    let bin = env!("CARGO_BIN_EXE_acrn-configurator");
    let dir = std::env::temp_dir().join(format!("acrn-inspect-nonroot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out_file = dir.join("board.xml");
    let mut cmd = if is_root() {
        // The output directory must be writable by nobody.
        Command::new("chmod")
            .arg("0777")
            .arg(&dir)
            .status()
            .expect("chmod");
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "--",
            bin,
        ]);
        c
    } else {
        Command::new(bin)
    };
    let started = std::time::Instant::now();
    let out = cmd
        .args(["inspect", "--name", "nonroot", "--out"])
        .arg(&out_file)
        .output()
        .expect("run inspect (setpriv is in util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "inspect as non-root: {:.2}s\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(out.status.success(), "inspect failed:\n{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("warning: "))
        .collect();
    assert!(
        !warnings.is_empty(),
        "a non-root inspect read everything? stderr:\n{stderr}"
    );
    let xml = std::fs::read_to_string(&out_file).unwrap();
    let header = &xml[..xml.find("-->").expect("a header comment")];
    assert!(header.contains("Not read"), "{header}");
    for w in &warnings {
        assert!(
            header.contains(&w.replace("--", "- -")),
            "warning `{w}` is not in the file's header:\n{header}"
        );
    }
    acrn_configurator::board::load_board(Path::new(&out_file))
        .unwrap_or_else(|e| panic!("the non-root board does not load: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
}
