//! Reading input files with a size limit. At most `limit + 1` bytes are ever read, so a file
//! that is too large is refused after that much; the size a file reports is not trusted,
//! because a device (`/dev/zero`), a FIFO, `/dev/stdin` or a process substitution (`<(...)`)
//! reports none. Such special files are read like regular ones as long as they end within the
//! limit. Every file the configurator reads (board, scenario, boot modules) goes through here.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("is a directory")]
    IsDirectory,
    #[error("larger than the limit of {limit} bytes (stopped reading at {read} bytes)")]
    TooLarge { limit: u64, read: u64 },
}

fn open(path: &Path) -> Result<File, ReadError> {
    let file = File::open(path)?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(ReadError::IsDirectory);
    }
    Ok(file)
}

/// The whole file, if it has at most `limit` bytes.
pub fn read(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let mut bytes = Vec::new();
    open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(ReadError::TooLarge { limit, read });
    }
    Ok(bytes)
}

/// Copies the file at `src` into `dst` (at most `limit` bytes, else an error) and returns its
/// sha256 (lowercase hex) and size, reading the source once: a FIFO cannot be read twice.
pub fn copy_hashed(
    src: &Path,
    dst: &mut dyn Write,
    limit: u64,
) -> Result<(String, u64), ReadError> {
    let mut input = open(src)?.take(limit.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        size += n as u64;
        if size > limit {
            return Err(ReadError::TooLarge { limit, read: size });
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_device_is_cut_at_the_limit_plus_one() {
        match read(Path::new("/dev/zero"), 1000) {
            Err(ReadError::TooLarge { limit, read }) => assert_eq!((limit, read), (1000, 1001)),
            other => panic!("{other:?}"),
        }
        let mut sink = Vec::new();
        let e = copy_hashed(Path::new("/dev/zero"), &mut sink, 100_000).unwrap_err();
        assert!(
            matches!(e, ReadError::TooLarge { limit: 100_000, .. }),
            "{e}"
        );
        assert!(sink.len() <= 100_000);
    }

    #[test]
    fn files_within_the_limit_are_read_whole() {
        let dir = std::env::temp_dir().join(format!("acrn-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ten");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read(&f, 10).unwrap(), b"0123456789");
        assert!(matches!(read(&f, 9), Err(ReadError::TooLarge { .. })));
        let mut copy = Vec::new();
        let (sha, size) = copy_hashed(&f, &mut copy, 10).unwrap();
        assert_eq!((copy.as_slice(), size), (&b"0123456789"[..], 10));
        assert_eq!(
            sha,
            "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882"
        );
        assert!(matches!(read(&dir, 10), Err(ReadError::IsDirectory)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
