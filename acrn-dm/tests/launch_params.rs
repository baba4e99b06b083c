//! Every acrn-dm command line ACRN's launch-script generator writes for the corpus
//! (../shared/reference/acrn-launch-params) goes through our parser: it parses, or it fails with
//! an error naming the one ACRN option or device this acrn-dm does not support.

use acrn_dm::cli::{self, CliError, Command, Device};
use std::path::{Path, PathBuf};

fn params_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/acrn-launch-params")
}

/// One `dm_params=( ... )` block: its file, VM id and argument words after evaluating ACRN's
/// helper functions as the script does.
struct Block {
    origin: String,
    args: Vec<String>,
}

fn expand_helper(call: &str) -> Vec<String> {
    let words: Vec<&str> = call.split_whitespace().collect();
    let (name, rest) = words.split_first().expect("empty helper call");
    match *name {
        "add_cpus" => vec!["--cpu_affinity".into(), rest.join(",")],
        "add_virtual_device" => {
            let mut s = format!("-s {},{}", rest[0], rest[1]);
            if rest.len() > 2 {
                s.push(',');
                s.push_str(&rest[2..].join(" "));
            }
            vec!["-s".into(), s[3..].to_string()]
        }
        "add_passthrough_device" => {
            // 0000:BB:DD.F -> BB/DD/F, as ACRN's helper does.
            let bdf = rest[1];
            let mut s = format!(
                "{},passthru,{}/{}/{}",
                rest[0],
                &bdf[5..7],
                &bdf[8..10],
                &bdf[11..12]
            );
            for o in &rest[2..] {
                s.push(',');
                s.push_str(o);
            }
            vec!["-s".into(), s]
        }
        "add_interrupt_storm_monitor" => vec!["--intr_monitor".into(), rest.join(",")],
        "add_logger_settings" => {
            let loggers: Vec<String> = rest
                .iter()
                .map(|c| {
                    let (l, lv) = c.split_once('=').expect("logger=level");
                    format!("{l},level={lv}")
                })
                .collect();
            vec!["--logger_setting".into(), loggers.join(";")]
        }
        other => panic!("unknown helper {other}"),
    }
}

fn blocks() -> Vec<Block> {
    let dir = params_dir();
    let mut files = Vec::new();
    for board in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let board = board.unwrap().path();
        if board.is_dir() {
            for f in std::fs::read_dir(&board).unwrap() {
                files.push(f.unwrap().path());
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(&dir).unwrap().display().to_string();
        let mut vm = String::new();
        let mut args: Option<Vec<String>> = None;
        for line in text.lines() {
            let line = line.trim();
            if let Some(id) = line.strip_prefix("# user VM id ") {
                vm = id.to_string();
            } else if line == "dm_params=(" {
                args = Some(Vec::new());
            } else if line == ")" {
                out.push(Block {
                    origin: format!("{rel} VM {vm}"),
                    args: args.take().expect(") without ("),
                });
            } else if let Some(a) = args.as_mut() {
                // The script's shell expansion of the MAC prefix.
                let line = line.replace("${mac:0:17}", "00:16:3e:12:34:56");
                if let Some(call) = line.strip_prefix('`').and_then(|l| l.strip_suffix('`')) {
                    a.extend(expand_helper(call));
                } else if !line.is_empty() {
                    a.extend(line.split_whitespace().map(str::to_string));
                }
            }
        }
    }
    out
}

/// The unsupported items, in the order the parser meets them, for one argument list.
fn first_unsupported(args: &[String]) -> Option<String> {
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-m" if it.peek().map(|v| v.as_str()) == Some("NoneM") => {
                return Some("-m NoneM".into())
            }
            "--ovmf" | "--windows" => return Some(a.clone()),
            "-s" => {
                let v = it.next().unwrap();
                if v.split(',').nth(1) == Some("virtio-input") {
                    return Some("virtio-input".into());
                }
            }
            _ => {}
        }
    }
    None
}

fn error_names(err: &CliError, item: &str) -> bool {
    match err {
        CliError::UnsupportedOption { option, .. } => option == item,
        CliError::UnsupportedDevice { device, .. } => device == item,
        CliError::BadValue { option, value, .. } => item == format!("{option} {value}"),
        _ => false,
    }
}

fn check(args: &[String], origin: &str) -> Result<(), String> {
    let got = cli::parse(args);
    match (first_unsupported(args), got) {
        (Some(item), Err(e)) => {
            assert!(
                error_names(&e, &item),
                "{origin}: expected an error naming {item}, got: {e}"
            );
            assert!(
                e.to_string().contains(item.split(' ').next().unwrap()),
                "{origin}: message {e}"
            );
            Err(item)
        }
        (Some(item), Ok(_)) => panic!("{origin}: {item} was accepted"),
        (None, Err(e)) => panic!("{origin}: {args:?} rejected: {e}"),
        (None, Ok(Command::Run(cfg))) => {
            let n_s = args.iter().filter(|a| *a == "-s").count();
            assert_eq!(cfg.devices.len(), n_s, "{origin}");
            assert_eq!(&cfg.vm_name, args.last().unwrap(), "{origin}");
            assert!(
                cfg.devices.iter().any(|d| d.device == Device::Hostbridge),
                "{origin}"
            );
            Ok(())
        }
        (None, Ok(other)) => panic!("{origin}: {other:?}"),
    }
}

#[test]
fn recorded_command_lines_parse_or_name_what_is_unsupported() {
    let blocks = blocks();
    assert!(blocks.len() >= 70, "only {} blocks found", blocks.len());
    let mut rejected: std::collections::BTreeMap<String, usize> = Default::default();
    for b in &blocks {
        if let Err(item) = check(&b.args, &b.origin) {
            *rejected.entry(item).or_default() += 1;
        }
    }
    // Every recorded line boots OVMF (and some give -m NoneM first): all are rejected as is.
    assert_eq!(rejected.values().sum::<usize>(), blocks.len());
    eprintln!("as recorded: {rejected:?}");
}

/// The same lines as our configurator will write them: the VM's real memory size instead of
/// `-m NoneM`, and a direct kernel boot instead of `--ovmf` (and so without `--windows`, which
/// only means something to OVMF guests).
#[test]
fn recorded_command_lines_with_direct_boot() {
    let mut parsed = 0;
    let mut rejected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for b in blocks() {
        let mut args = Vec::new();
        let mut it = b.args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--ovmf" => {
                    it.next();
                    args.extend(["--kernel".to_string(), "/boot/bzImage".to_string()]);
                }
                "--windows" => {}
                "-m" => {
                    let v = it.next().unwrap();
                    args.push("-m".into());
                    args.push(if v == "NoneM" {
                        "512M".into()
                    } else {
                        v.clone()
                    });
                }
                _ => args.push(a.clone()),
            }
        }
        match check(&args, &b.origin) {
            Ok(()) => parsed += 1,
            Err(item) => rejected.entry(item).or_default().push(b.origin.clone()),
        }
    }
    eprintln!("parsed: {parsed}; rejected: {rejected:#?}");
    // What is left unsupported: virtio-input.
    let kinds: Vec<&str> = rejected.keys().map(String::as_str).collect();
    assert_eq!(kinds, ["virtio-input"]);
    assert!(parsed >= 40, "only {parsed} parsed");
}
