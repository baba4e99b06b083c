//! A Linux initramfs: a `newc` cpio archive written directly (no `cpio` run, no root needed for
//! the console device node it holds).

/// One archive entry.
#[derive(Clone, Copy)]
pub enum Entry<'a> {
    Dir(&'a str),
    /// A regular file with its permission bits.
    File(&'a str, u32, &'a [u8]),
    /// A character device with its major and minor numbers.
    CharDev(&'a str, u32, u32),
    Symlink(&'a str, &'a str),
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn record(out: &mut Vec<u8>, ino: u32, mode: u32, rdev: (u32, u32), name: &str, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0, // uid
        0, // gid
        1, // nlink
        0, // mtime
        data.len() as u32,
        0, // devmajor
        0, // devminor
        rdev.0,
        rdev.1,
        name.len() as u32 + 1,
        0, // check
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

/// The archive of `entries` (paths without a leading `/`), with its trailer.
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let ino = i as u32 + 1;
        match *e {
            Entry::Dir(p) => record(&mut out, ino, 0o040_755, (0, 0), p, &[]),
            Entry::File(p, perm, data) => record(&mut out, ino, 0o100_000 | perm, (0, 0), p, data),
            Entry::CharDev(p, major, minor) => {
                record(&mut out, ino, 0o020_600, (major, minor), p, &[])
            }
            Entry::Symlink(p, target) => {
                record(&mut out, ino, 0o120_777, (0, 0), p, target.as_bytes())
            }
        }
    }
    record(&mut out, 0, 0, (0, 0), "TRAILER!!!", &[]);
    out
}

/// A busybox initramfs: `/bin/busybox` (statically linked), `/init` running `init_script`
/// with busybox's shell, and `/dev/console` (the kernel opens it for init's stdio before
/// anything is mounted).
pub fn busybox_initramfs(busybox: &[u8], init_script: &str) -> Vec<u8> {
    busybox_initramfs_with(busybox, init_script, &[])
}

/// [`busybox_initramfs`] with `extra` entries after the standard ones (a directory before
/// the files in it).
pub fn busybox_initramfs_with(busybox: &[u8], init_script: &str, extra: &[Entry]) -> Vec<u8> {
    let init = format!("#!/bin/busybox sh\n{init_script}");
    let mut entries = vec![
        Entry::Dir("bin"),
        Entry::Dir("dev"),
        Entry::Dir("proc"),
        Entry::Dir("sys"),
        Entry::Dir("tmp"),
        Entry::CharDev("dev/console", 5, 1),
        Entry::File("bin/busybox", 0o755, busybox),
        Entry::Symlink("bin/sh", "busybox"),
        Entry::File("init", 0o755, init.as_bytes()),
    ];
    entries.extend_from_slice(extra);
    newc(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_records_are_aligned_and_end_with_the_trailer() {
        let a = newc(&[Entry::File("init", 0o755, b"abc"), Entry::Dir("bin")]);
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        // Header: mode of "init" (field 2) and its size (field 7).
        assert_eq!(&a[14..22], b"000081ED");
        assert_eq!(&a[54..62], b"00000003");
        // 110-byte header + "init\0" padded to 116, then the data "abc" padded to 4.
        assert_eq!(&a[110..115], b"init\0");
        assert_eq!(&a[116..119], b"abc");
        let trailer = a.windows(10).position(|w| w == b"TRAILER!!!").unwrap();
        assert!(trailer > 120);
        assert_eq!(&a[trailer - 110..trailer - 104], b"070701");
    }

    #[test]
    fn initramfs_has_console_busybox_and_init() {
        let a = busybox_initramfs(b"\x7fELF", "exec sh\n");
        let has = |s: &[u8]| a.windows(s.len()).any(|w| w == s);
        assert!(has(b"dev/console\0"));
        assert!(has(b"bin/busybox\0"));
        assert!(has(b"#!/bin/busybox sh\nexec sh\n"));
        // dev/console: a character device 5:1 (mode 020600, rdevmajor 5, rdevminor 1).
        let at = a.windows(12).position(|w| w == b"dev/console\0").unwrap() - 110;
        assert_eq!(&a[at + 14..at + 22], b"00002180");
        assert_eq!(&a[at + 78..at + 94], b"0000000500000001");
    }
}
