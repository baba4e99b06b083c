//! Helpers shared by the integration tests (`mod common;`) and the crate's unit tests
//! (`#[path = "../../tests/common/mod.rs"] mod common;`): where the repository and ACRN's
//! corpus are, and the board/scenario pairs in a directory.
//!
//! The corpus is read in place from `$ACRN_CORPUS` or `../shared/acrn-corpus` beside the
//! repository; without it tests skip their corpus part and say so in `cargo test`'s output (CI
//! sets `ACRN_REQUIRE_CORPUS=1`, which makes them fail instead).

// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The two corpus scenarios ACRN itself rejects.
pub const INVALID: [&str; 2] = [
    "whl-ipc-i5/shared_launch_1user_vm_hardrt.xml",
    "whl-ipc-i5/shared_launch_1user_vm_vxworks.xml",
];

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// ACRN's corpus, or `None` (with a SKIP line) when it is absent.
pub fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("ACRN_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/acrn-corpus"));
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var("ACRN_REQUIRE_CORPUS").as_deref() != Ok("1"),
        "ACRN_REQUIRE_CORPUS=1 but the corpus is not at {}",
        dir.display()
    );
    say_skipped(&format!(
        "ACRN corpus not found at {} (set ACRN_CORPUS); the corpus parts of these tests did not run",
        dir.display()
    ));
    None
}

/// Prints a skip once per test binary, on the real stderr: the test harness captures
/// `eprintln!` of passing tests, and a skip must be seen.
pub fn say_skipped(why: &str) {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "SKIP: {why}");
    });
}

/// (board file, scenario file) for every directory `D` of `root` holding `D.xml`, with each
/// other file of `D` ending in `ext` (`xml` or `toml`) as a scenario; sorted.
pub fn pairs_in(root: &Path, ext: &str) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(root) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = dirs
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
        let mut scen: Vec<PathBuf> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == ext) && *p != board)
            .collect();
        scen.sort();
        out.extend(scen.into_iter().map(|s| (board.clone(), s)));
    }
    out
}

/// Whether a corpus scenario is one of the two ACRN rejects.
pub fn is_invalid(scenario: &Path) -> bool {
    INVALID.iter().any(|i| scenario.ends_with(i))
}
