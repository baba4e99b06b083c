//! Resolving `--board` / `--scenario` arguments like ACRN's make: a path to an existing file
//! is used as is; a board NAME means `configs/NAME/NAME.xml`, a scenario NAME means
//! `configs/<board name>/NAME.xml` (else `NAME.toml`), relative to the repository root; a
//! bare file name such as `NAME.toml` not found in the current directory is looked for there
//! too.

use std::path::{Path, PathBuf};

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("`{arg}` is neither a file nor a known {what} name (looked for {})", .tried.display())]
    NotFound {
        arg: String,
        what: &'static str,
        tried: PathBuf,
    },
}

/// The repository root: the nearest ancestor of the current directory with a `configs/`
/// directory and a `Cargo.toml`, else the root this binary was built from.
pub fn repo_root() -> PathBuf {
    let is_root = |p: &Path| p.join("configs").is_dir() && p.join("Cargo.toml").is_file();
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(r) = cwd.ancestors().find(|p| is_root(p)) {
            return r.to_path_buf();
        }
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR"));
    built.parent().unwrap_or(built).to_path_buf()
}

fn looks_like_path(arg: &str) -> bool {
    arg.contains('/') || arg.contains('\\') || arg.ends_with(".xml") || arg.ends_with(".toml")
}

/// Resolves a board argument.
pub fn resolve_board(arg: &str, root: &Path) -> Result<PathBuf, ResolveError> {
    let p = Path::new(arg);
    if p.is_file() || looks_like_path(arg) {
        return Ok(p.to_path_buf());
    }
    let tried = root.join("configs").join(arg).join(format!("{arg}.xml"));
    if tried.is_file() {
        Ok(tried)
    } else {
        Err(ResolveError::NotFound {
            arg: arg.into(),
            what: "board",
            tried,
        })
    }
}

/// The board's name as ACRN's make derives it: the file stem.
pub fn board_name(board_path: &Path) -> String {
    board_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Resolves a scenario argument; a NAME is looked for beside the board under `configs/`
/// (`.xml`, then `.toml`).
pub fn resolve_scenario(
    arg: &str,
    board_path: &Path,
    root: &Path,
) -> Result<PathBuf, ResolveError> {
    let p = Path::new(arg);
    let dir = root.join("configs").join(board_name(board_path));
    // A bare file name (`partitioned.toml`) that is not in the current directory is looked
    // for beside the board, so the TOML twin of a scenario can be named too.
    let bare = !arg.contains('/') && !arg.contains('\\');
    if bare && !p.is_file() && dir.join(arg).is_file() {
        return Ok(dir.join(arg));
    }
    if p.is_file() || looks_like_path(arg) {
        return Ok(p.to_path_buf());
    }
    let xml = dir.join(format!("{arg}.xml"));
    if xml.is_file() {
        return Ok(xml);
    }
    let toml = dir.join(format!("{arg}.toml"));
    if toml.is_file() {
        return Ok(toml);
    }
    Err(ResolveError::NotFound {
        arg: arg.into(),
        what: "scenario",
        tried: xml,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_under_configs() {
        let dir = std::env::temp_dir().join(format!("acrn-paths-{}", std::process::id()));
        let b = dir.join("configs/myboard");
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("myboard.xml"), "<acrn-config board=\"myboard\"/>").unwrap();
        std::fs::write(b.join("shared.toml"), "").unwrap();
        let board = resolve_board("myboard", &dir).unwrap();
        assert_eq!(board, b.join("myboard.xml"));
        assert_eq!(
            resolve_scenario("shared", &board, &dir).unwrap(),
            b.join("shared.toml")
        );
        assert_eq!(
            resolve_scenario("shared.toml", &board, &dir).unwrap(),
            b.join("shared.toml")
        );
        assert!(resolve_scenario("nope", &board, &dir).is_err());
        assert!(resolve_board("nope", &dir).is_err());
        assert_eq!(
            resolve_board("x/y.xml", &dir).unwrap(),
            PathBuf::from("x/y.xml")
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
