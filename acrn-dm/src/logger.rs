//! ACRN's three loggers (`--logger_setting console,level=N;kmsg,level=N;disk,level=N`):
//! stderr, the kernel log (/dev/kmsg) and a file under /var/log/acrn-dm. A message goes to each
//! logger whose level is at least the message's (syslog levels: 3 error, 4 warning, 5 notice,
//! 6 info, 7 debug). Without a setting only errors and warnings reach stderr.

use crate::cli::LoggerSetting;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Directory of the disk log.
pub const DISK_LOG_DIR: &str = "/var/log/acrn-dm";

/// Message severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// 3
    Error = 3,
    /// 4
    Warning = 4,
    /// 5
    Notice = 5,
    /// 6
    Info = 6,
}

struct Sinks {
    console: u8,
    kmsg: Option<(u8, File)>,
    disk: Option<(u8, File)>,
}

static SINKS: Mutex<Option<Sinks>> = Mutex::new(None);

/// Opens the loggers of `setting` for VM `vm_name`; a logger that cannot be opened is reported
/// on stderr and left out.
pub fn init(setting: &LoggerSetting, vm_name: &str) {
    init_at(
        setting,
        vm_name,
        Path::new("/dev/kmsg"),
        Path::new(DISK_LOG_DIR),
    );
}

fn init_at(setting: &LoggerSetting, vm_name: &str, kmsg: &Path, dir: &Path) {
    let open = |level: Option<u8>, path: PathBuf, what: &str| {
        let level = level?;
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        match OpenOptions::new().append(true).create(true).open(&path) {
            Ok(f) => Some((level, f)),
            Err(e) => {
                eprintln!(
                    "acrn-dm: {what} log {}: {e}; not logging there",
                    path.display()
                );
                None
            }
        }
    };
    let sinks = Sinks {
        console: setting.console.unwrap_or(Level::Warning as u8),
        kmsg: open(setting.kmsg, kmsg.to_path_buf(), "kernel"),
        disk: open(setting.disk, dir.join(format!("{vm_name}.log")), "disk"),
    };
    *SINKS.lock().unwrap_or_else(|p| p.into_inner()) = Some(sinks);
}

/// Logs `msg` at `level`.
pub fn log(level: Level, msg: &str) {
    let mut guard = SINKS.lock().unwrap_or_else(|p| p.into_inner());
    let lv = level as u8;
    match guard.as_mut() {
        None => {
            if level <= Level::Warning {
                eprintln!("acrn-dm: {msg}");
            }
        }
        Some(s) => {
            if lv <= s.console {
                eprintln!("acrn-dm: {msg}");
            }
            if let Some((_, f)) = s.kmsg.as_mut().filter(|(l, _)| lv <= *l) {
                let _ = writeln!(f, "<{lv}>acrn-dm: {msg}");
            }
            if let Some((_, f)) = s.disk.as_mut().filter(|(l, _)| lv <= *l) {
                let _ = writeln!(f, "{msg}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_route_messages() {
        let dir = std::env::temp_dir().join(format!("acrn-dm-log-{}", std::process::id()));
        let kmsg = dir.join("kmsg");
        let setting = LoggerSetting {
            console: Some(1),
            kmsg: Some(3),
            disk: Some(6),
        };
        init_at(&setting, "vm1", &kmsg, &dir);
        log(Level::Info, "info line");
        log(Level::Error, "error line");
        let disk = std::fs::read_to_string(dir.join("vm1.log")).unwrap();
        let k = std::fs::read_to_string(&kmsg).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(disk, "info line\nerror line\n");
        assert_eq!(k, "<3>acrn-dm: error line\n");
    }
}
