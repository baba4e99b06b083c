//! The launch scripts (`launch_user_vm_id<N>.sh`) against what ACRN's own generator writes.
//!
//! For every corpus pair with post-launched VMs, ACRN's `launch_cfg_gen.py` output is recorded
//! in `../shared/reference/acrn-launch-params/<board>/<scenario>.txt` (its README says how to
//! read it). Each generated script is *run* (`sh`, with a stand-in acrn-dm that records its
//! arguments, and a scratch sysfs/procfs) and the arguments it passes are compared with the
//! recorded ones, after the differences in [`ours_from_acrn`]. Our own configs/ scenarios
//! are checked against argument lists written out here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use acrn_configurator::gen::{self, GenerateOptions};

mod common;
use common::{corpus, is_invalid, pairs_in, repo};

/// What the scratch Service VM's first Ethernet interface reports as its address.
const MAC: &str = "00:16:3e:5a:01:02";
const KERNEL: &str = "/boot/uvm kernel";
const BOOTARGS: &str = "console=ttyS0 quiet";

/// The event number of the scratch Service VM's input device.
const INPUT_EVENT: u32 = 7;

/// (name, physical path) of an input device named as the configurator names it.
fn input_device(options: &str) -> Option<(&str, &str)> {
    options
        .strip_prefix("Device name: ")?
        .rsplit_once(", Device physical path: ")
}

/// The input devices a reference script names.
fn input_devices(acrn_lines: &[String]) -> Vec<(String, String)> {
    acrn_lines
        .iter()
        .filter_map(|l| {
            l.split_once(" virtio-input ")
                .map(|(_, o)| o.trim_end_matches('`'))
        })
        .filter_map(input_device)
        .map(|(n, p)| (n.to_owned(), p.to_owned()))
        .collect()
}

/// ACRN's recorded `dm_params` of one script, expanded into acrn-dm arguments as the README
/// of the reference says its helper functions do.
fn expand_acrn(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        let line = line.replace("${mac:0:17}", MAC);
        let Some(call) = line.strip_prefix('`').and_then(|l| l.strip_suffix('`')) else {
            out.extend(line.split_whitespace().map(str::to_owned));
            continue;
        };
        let (func, rest) = call.split_once(' ').unwrap_or((call, ""));
        let rest = rest.trim();
        let words: Vec<&str> = rest.split_whitespace().collect();
        match func {
            "add_cpus" => {
                out.push("--cpu_affinity".into());
                out.push(words.join(","));
            }
            "add_virtual_device" => {
                let (slot, rest) = rest.split_once(' ').unwrap();
                let (kind, options) = rest.split_once(' ').unwrap_or((rest, ""));
                // ACRN's helper turns an input device named by name and physical path into
                // its event device, which the scratch Service VM has (see `input_devices`).
                let options = match input_device(options) {
                    Some(_) => format!("/dev/input/event{INPUT_EVENT}"),
                    None => options.to_owned(),
                };
                out.push("-s".into());
                out.push(if options.is_empty() {
                    format!("{slot},{kind}")
                } else {
                    format!("{slot},{kind},{options}")
                });
            }
            "add_passthrough_device" => {
                // 0000:BB:DD.F -> BB/DD/F in hex without leading zeros, as ACRN's printf.
                let bdf = words[1];
                let bus = u8::from_str_radix(&bdf[5..7], 16).unwrap();
                let dev = u8::from_str_radix(&bdf[8..10], 16).unwrap();
                let func = u8::from_str_radix(&bdf[11..12], 16).unwrap();
                let mut v = format!("{},passthru,{bus:x}/{dev:x}/{func:x}", words[0]);
                for o in &words[2..] {
                    v.push(',');
                    v.push_str(o);
                }
                out.push("-s".into());
                out.push(v);
            }
            "add_interrupt_storm_monitor" => {
                out.push("--intr_monitor".into());
                out.push(words.join(","));
            }
            "add_logger_settings" => {
                out.push("--logger_setting".into());
                let l: Vec<String> = words
                    .iter()
                    .map(|w| {
                        let (k, v) = w.split_once('=').unwrap();
                        format!("{k},level={v}")
                    })
                    .collect();
                out.push(l.join(";"));
            }
            other => panic!("unknown helper `{other}` in the reference"),
        }
    }
    out
}

/// Where and why our scripts differ from ACRN's on purpose (configurator/README.md, and the
/// header of each script, say the same). Returns the arguments we are expected to pass and
/// the names of the differences that applied.
fn ours_from_acrn(acrn: &[String]) -> (Vec<String>, Vec<&'static str>) {
    let mut out = Vec::new();
    let mut applied = Vec::new();
    let mut i = 0;
    while i < acrn.len() {
        let pair = (acrn[i].as_str(), acrn.get(i + 1).map(String::as_str));
        match pair {
            // ACRN writes `-m NoneM` for a VM without <memory> (its generator prints Python's
            // None), which acrn-dm rejects; we pass the size the VM gets: the schema default
            // of 1024 MB, as the hypervisor tables and C44 do.
            ("-m", Some("NoneM")) => {
                out.extend(["-m".to_owned(), "1024M".to_owned()]);
                applied.push("-m NoneM -> -m 1024M");
                i += 2;
            }
            // Our acrn-dm has no firmware (no OVMF): the VM's kernel is booted directly.
            ("--ovmf", Some("/usr/share/acrn/bios/OVMF.fd")) => {
                out.extend(
                    ["--kernel", KERNEL, "--bootargs", BOOTARGS]
                        .iter()
                        .map(|s| s.to_string()),
                );
                applied.push("--ovmf -> --kernel/--bootargs");
                i += 2;
            }
            _ => {
                out.push(acrn[i].clone());
                i += 1;
            }
        }
    }
    (out, applied)
}

/// `<board>/<scenario>.txt`: user VM id -> its `dm_params` lines.
fn read_reference(path: &Path) -> BTreeMap<u32, Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    let mut current: Option<(u32, Vec<String>)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(id) = line.strip_prefix("# user VM id ") {
            current = Some((id.parse().unwrap(), Vec::new()));
        } else if line == "dm_params=(" || line.is_empty() {
        } else if line == ")" {
            let (id, lines) = current.take().expect("`)` without a block");
            out.insert(id, lines);
        } else {
            current
                .as_mut()
                .expect("a line outside a block")
                .1
                .push(line.to_owned());
        }
    }
    out
}

/// A scratch Service VM for running one script: sysfs, procfs, a stand-in acrn-dm and `ip`.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str, threads: &[(u32, u32)], pci: &[String]) -> Scratch {
        Self::with_inputs(name, threads, pci, &[])
    }

    fn with_inputs(
        name: &str,
        threads: &[(u32, u32)],
        pci: &[String],
        inputs: &[(String, String)],
    ) -> Scratch {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("launch-scripts")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let sys = dir.join("sys");
        let w = |p: PathBuf, body: &str| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        };
        w(sys.join("class/net/eth0/address"), &format!("{MAC}\n"));
        w(sys.join("devices/virtual/misc/acrn_hsm/remove_cpu"), "");
        let mut cpuinfo = String::new();
        for (cpu, apic) in threads {
            cpuinfo.push_str(&format!(
                "processor\t: {cpu}\nvendor_id\t: GenuineIntel\napicid\t\t: {apic}\ninitial apicid\t: {apic}\n\n"
            ));
            w(
                sys.join(format!("devices/system/cpu/cpu{cpu}/online")),
                "1\n",
            );
        }
        w(dir.join("proc/cpuinfo"), &cpuinfo);
        for (name, phys) in inputs {
            let ev = sys.join(format!("class/input/event{INPUT_EVENT}/device"));
            w(ev.join("name"), &format!("{name}\n"));
            w(ev.join("phys"), &format!("{phys}\n"));
        }
        for bdf in pci {
            let d = sys.join("bus/pci/devices").join(bdf);
            w(d.join("vendor"), "0x8086\n");
            w(d.join("device"), "0x1234\n");
            w(d.join("driver/unbind"), "");
        }
        let bin = dir.join("bin");
        w(
            bin.join("acrn-dm"),
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$ARGS_OUT\"\n",
        );
        w(
            bin.join("ip"),
            "#!/bin/sh\necho \"ip $*\" >> \"$ACRN_SYSFS/ip.log\"\n",
        );
        for f in ["acrn-dm", "ip"] {
            chmod_x(&bin.join(f));
        }
        Scratch { dir }
    }

    /// Runs the script; its acrn-dm arguments.
    fn run(&self, script: &Path, ramdisk: Option<&str>) -> Vec<String> {
        let args = self.dir.join("args");
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("sh");
        cmd.arg(script)
            .env("PATH", path)
            .env("ACRN_DM", self.dir.join("bin/acrn-dm"))
            .env("ACRN_SYSFS", self.dir.join("sys"))
            .env("ACRN_PROCFS", self.dir.join("proc"))
            .env("ACRN_UVM_KERNEL", KERNEL)
            .env("ACRN_UVM_BOOTARGS", BOOTARGS)
            .env("ARGS_OUT", &args);
        match ramdisk {
            Some(r) => cmd.env("ACRN_UVM_RAMDISK", r),
            None => cmd.env_remove("ACRN_UVM_RAMDISK"),
        };
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&args)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn sys(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join("sys").join(rel)).unwrap_or_default()
    }
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Generates a pair's files into a scratch directory; the directory.
fn generate(board: &Path, scenario: &Path, name: &str) -> (PathBuf, gen::GeneratedFiles) {
    let opts = GenerateOptions {
        allow_warnings: true,
        ..Default::default()
    };
    let files = gen::generate(board, scenario, &opts)
        .unwrap_or_else(|r| panic!("{}:\n{}", scenario.display(), r.findings.render_plain()));
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("launch-scripts-out")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    files.write_to(&dir).unwrap();
    (dir, files)
}

/// (Linux CPU number, APIC ID) of every thread of a board.
fn threads(board: &Path) -> Vec<(u32, u32)> {
    let b = acrn_configurator::board::load_board(board).unwrap();
    b.threads().map(|t| (t.cpu_id, t.apic_id)).collect()
}

/// `0000:BB:DD.F` of each passthrough device an argument list names.
fn passthrough_bdfs(args: &[String]) -> Vec<String> {
    args.iter()
        .filter_map(|a| a.split_once(",passthru,"))
        .map(|(_, bdf)| {
            let n: Vec<u8> = bdf
                .split(',')
                .next()
                .unwrap()
                .split('/')
                .map(|x| u8::from_str_radix(x, 16).unwrap())
                .collect();
            format!("0000:{:02x}:{:02x}.{}", n[0], n[1], n[2])
        })
        .collect()
}

fn shellcheck(scripts: &[PathBuf]) {
    // scripts/setup.sh installs shellcheck (scripts/tools.txt), so a missing one is a failure.
    let out = Command::new("shellcheck")
        .args(scripts)
        .output()
        .expect("run shellcheck (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn corpus_scripts_pass_acrns_arguments() {
    let Some(corpus) = corpus() else { return };
    let reference = repo().join("../shared/reference/acrn-launch-params");
    assert!(
        reference.is_dir(),
        "the corpus is here but ACRN's launch parameters are not: {}",
        reference.display()
    );
    let (mut pairs, mut vms, mut exact) = (0, 0, 0);
    let mut differences: BTreeMap<&str, usize> = BTreeMap::new();
    let mut all_scripts = Vec::new();
    for (board, scenario) in pairs_in(&corpus, "xml") {
        if is_invalid(&scenario) {
            continue;
        }
        let board_dir = board.parent().unwrap().file_name().unwrap();
        let stem = scenario.file_stem().unwrap().to_string_lossy().into_owned();
        let name = format!("{}-{stem}", board_dir.to_string_lossy());
        let (dir, files) = generate(&board, &scenario, &name);
        let scripts: Vec<&str> = files
            .files
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.ends_with(".sh"))
            .collect();
        let ref_file = reference.join(board_dir).join(format!("{stem}.txt"));
        if !ref_file.exists() {
            assert!(
                scripts.is_empty(),
                "{name}: scripts {scripts:?} but ACRN writes none"
            );
            continue;
        }
        let expected = read_reference(&ref_file);
        let ids: Vec<String> = expected
            .keys()
            .map(|id| gen::launch_script::file_name(*id))
            .collect();
        assert_eq!(scripts, ids, "{name}: script names");
        pairs += 1;
        let threads = threads(&board);
        for (id, lines) in &expected {
            vms += 1;
            let acrn = expand_acrn(lines);
            let script = dir.join(gen::launch_script::file_name(*id));
            all_scripts.push(script.clone());
            let scratch = Scratch::with_inputs(
                &format!("{name}-{id}"),
                &threads,
                &passthrough_bdfs(&acrn),
                &input_devices(lines),
            );
            let ours = scratch.run(&script, None);
            if ours == acrn {
                exact += 1;
            }
            let (expected, applied) = ours_from_acrn(&acrn);
            assert_eq!(ours, expected, "{name}, user VM {id}");
            for d in applied {
                *differences.entry(d).or_default() += 1;
            }
            // Passthrough devices are taken from their Service VM driver.
            for bdf in passthrough_bdfs(&acrn) {
                assert_eq!(
                    scratch.sys(&format!("bus/pci/devices/{bdf}/driver/unbind")),
                    format!("{bdf}\n"),
                    "{name}, user VM {id}: {bdf} not unbound"
                );
            }
            // Tap devices are created.
            for a in &acrn {
                if let Some(tap) = a.split(",virtio-net,tap=").nth(1) {
                    let tap = tap.split(',').next().unwrap();
                    assert!(
                        scratch
                            .sys("ip.log")
                            .contains(&format!("ip tuntap add dev {tap} mode tap")),
                        "{name}, user VM {id}: tap {tap} not created"
                    );
                }
            }
        }
    }
    shellcheck(&all_scripts);
    let mut summary = format!(
        "launch scripts: {pairs} corpus pairs, {vms} user VMs; {exact} pass exactly ACRN's \
         arguments, all {vms} after the table of differences:"
    );
    for (d, n) in &differences {
        summary.push_str(&format!(" {d} ({n} VMs);"));
    }
    eprintln!("{summary}");
    // 23 recorded pairs, 78 user VMs: every one matches once the differences are applied.
    assert_eq!((pairs, vms), (23, 78), "{summary}");
}

/// The CPUs of a VM that must own them (an RTVM) are offlined in the Service VM and handed to
/// the hypervisor through the HSM; a VM that shares its CPUs leaves them online.
#[test]
fn rtvm_scripts_offline_their_cpus_and_shared_ones_do_not() {
    let Some(corpus) = corpus() else { return };
    let board = corpus.join("cfl-k700-i7/cfl-k700-i7.xml");
    let (dir, _) = generate(&board, &corpus.join("cfl-k700-i7/shared.xml"), "offline");
    let threads = threads(&board);
    // User VM 2 (POST_RT_VM1) is an RTVM on APIC IDs 4 and 6.
    let s = Scratch::new("offline-rt", &threads, &[]);
    let args = s.run(&dir.join("launch_user_vm_id2.sh"), None);
    assert!(args.windows(2).any(|w| w == ["--cpu_affinity", "4,6"]));
    let cpu_of = |apic: u32| threads.iter().find(|t| t.1 == apic).unwrap().0;
    for apic in [4, 6] {
        assert_eq!(
            s.sys(&format!("devices/system/cpu/cpu{}/online", cpu_of(apic))),
            "0\n"
        );
    }
    assert_eq!(
        s.sys("devices/virtual/misc/acrn_hsm/remove_cpu"),
        format!("{}\n", cpu_of(6))
    );
    // Launched again: the CPUs are gone from /proc/cpuinfo, nothing is offlined twice.
    let gone: Vec<_> = threads
        .iter()
        .copied()
        .filter(|t| ![4, 6].contains(&t.1))
        .collect();
    let again = Scratch::new("offline-rt-again", &gone, &[]);
    assert_eq!(again.run(&dir.join("launch_user_vm_id2.sh"), None), args);
    assert_eq!(again.sys("devices/virtual/misc/acrn_hsm/remove_cpu"), "");
    // User VM 1 (a standard VM under SCHED_BVT) shares pCPUs 0 and 2 with the Service VM.
    let s = Scratch::new("offline-std", &threads, &["0000:00:02.0".into()]);
    s.run(&dir.join("launch_user_vm_id1.sh"), None);
    assert_eq!(s.sys("devices/virtual/misc/acrn_hsm/remove_cpu"), "");
    for (cpu, _) in &threads {
        assert_eq!(s.sys(&format!("devices/system/cpu/cpu{cpu}/online")), "1\n");
    }
}

/// Our own scenarios with post-launched VMs: the arguments are written out here.
#[test]
fn configs_scripts_launch_our_post_launched_vms() {
    let logger = "console,level=4;kmsg,level=3;disk,level=5";
    let vm = |apic: &str, mem: &str, name: &str| -> Vec<String> {
        [
            "--cpu_affinity",
            apic,
            "-m",
            mem,
            "--kernel",
            KERNEL,
            "--ramdisk",
            "/boot/uvm initrd",
            "--bootargs",
            BOOTARGS,
            "-s",
            "1:0,lpc",
            "-s",
            "0:0,hostbridge",
            "--logger_setting",
            logger,
            name,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut scripts = Vec::new();
    for (board, mem) in [("qemu-epyc", "256M"), ("bochs-tigerlake", "128M")] {
        let dir = repo().join("configs").join(board);
        let board_file = dir.join(format!("{board}.xml"));
        let threads = threads(&board_file);
        for (scen, expected) in [
            (
                "shared",
                vec![vm("2", mem, "POST_VM1"), vm("3", mem, "POST_VM2")],
            ),
            ("hybrid", vec![vm("2", mem, "POST_VM1")]),
        ] {
            let name = format!("configs-{board}-{scen}");
            let (out, files) = generate(&board_file, &dir.join(format!("{scen}.xml")), &name);
            let n = files
                .files
                .iter()
                .filter(|(f, _)| f.ends_with(".sh"))
                .count();
            assert_eq!(n, expected.len(), "{name}");
            for (i, want) in expected.iter().enumerate() {
                let script = out.join(gen::launch_script::file_name(i as u32 + 1));
                let s = Scratch::new(&format!("{name}-{i}"), &threads, &[]);
                assert_eq!(&s.run(&script, Some("/boot/uvm initrd")), want, "{name}");
                scripts.push(script);
            }
        }
    }
    // Without ACRN_UVM_* the kernel and initramfs are the files beside the script.
    let dir = repo().join("configs/qemu-epyc");
    let (out, _) = generate(
        &dir.join("qemu-epyc.xml"),
        &dir.join("shared.xml"),
        "beside",
    );
    std::fs::write(out.join("POST_VM1_ramdisk"), "").unwrap();
    let s = Scratch::new("beside", &threads(&dir.join("qemu-epyc.xml")), &[]);
    let out_s = out.join("launch_user_vm_id1.sh");
    let args = Command::new("sh")
        .arg(&out_s)
        .env("ACRN_DM", s.dir.join("bin/acrn-dm"))
        .env("ARGS_OUT", s.dir.join("args"))
        .env_remove("ACRN_UVM_KERNEL")
        .env_remove("ACRN_UVM_RAMDISK")
        .env_remove("ACRN_UVM_BOOTARGS")
        .status()
        .unwrap();
    assert!(args.success());
    let args = std::fs::read_to_string(s.dir.join("args")).unwrap();
    let here = out.display();
    assert!(
        args.contains(&format!(
            "--kernel\n{here}/POST_VM1_kernel\n--ramdisk\n{here}/POST_VM1_ramdisk\n--bootargs\nconsole=ttyS0\n"
        )),
        "{args}"
    );
    shellcheck(&scripts);
}

/// A device whose argument cannot be derived is an A14 finding at the device, and the CLI
/// writes nothing.
#[test]
fn a_network_without_interface_name_is_a14_and_nothing_is_written() {
    let dir = repo().join("configs/qemu-epyc");
    let text = std::fs::read_to_string(dir.join("shared.xml")).unwrap();
    let broken = text.replacen(
        "    <console_vuart>COM Port 1</console_vuart>\n  </vm>\n  <vm id=\"2\">",
        "    <console_vuart>COM Port 1</console_vuart>\n    <virtio_devices>\n      <network>\n        \
         <virtio_framework>User space based (VBSU)</virtio_framework>\n      </network>\n    \
         </virtio_devices>\n  </vm>\n  <vm id=\"2\">",
        1,
    );
    assert_ne!(broken, text);
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("launch-a14");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let scen = tmp.join("shared.xml");
    std::fs::write(&scen, &broken).unwrap();
    let line = broken
        .lines()
        .position(|l| l.contains("<network>"))
        .unwrap()
        + 1;
    let out = tmp.join("out");
    let r = Command::new(env!("CARGO_BIN_EXE_acrn-configurator"))
        .args(["generate", "--board"])
        .arg(dir.join("qemu-epyc.xml"))
        .arg("--scenario")
        .arg(&scen)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    let stdout = String::from_utf8_lossy(&r.stdout);
    let all = format!("{stdout}{stderr}");
    assert_eq!(r.status.code(), Some(1), "{all}");
    assert!(all.contains("A14"), "{all}");
    assert!(all.contains("no interface_name"), "{all}");
    assert!(all.contains(&format!("shared.xml:{line}:")), "{all}");
    assert!(!out.exists(), "files were written: {all}");
}

/// All files or none: a target that cannot be replaced (a directory named like a script)
/// stops the write before any file is put in place, and no temporary file stays.
#[test]
fn a_failed_write_leaves_no_new_file() {
    let dir = repo().join("configs/qemu-epyc");
    let files = gen::generate(
        &dir.join("qemu-epyc.xml"),
        &dir.join("shared.xml"),
        &GenerateOptions::default(),
    )
    .unwrap();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("launch-partial");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("launch_user_vm_id2.sh")).unwrap();
    assert!(files.write_to(&out).is_err());
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["launch_user_vm_id2.sh"]);
}

/// An input device the Service VM does not have is left out of the VM, as ACRN's script does;
/// the rest of the VM is launched.
#[test]
fn an_input_device_the_service_vm_lacks_is_left_out() {
    let Some(corpus) = corpus() else { return };
    let board = corpus.join("adl-asrock/adl-asrock.xml");
    let (dir, _) = generate(&board, &corpus.join("adl-asrock/shared.xml"), "no-input");
    let script = dir.join("launch_user_vm_id1.sh");
    let with = Scratch::with_inputs(
        "input-there",
        &threads(&board),
        &["0000:00:02.0".into()],
        &[(
            "Raritan D2CIM-DVUSB".into(),
            "usb-0000:00:14.0-4/input0".into(),
        )],
    )
    .run(&script, None);
    let without =
        Scratch::new("input-absent", &threads(&board), &["0000:00:02.0".into()]).run(&script, None);
    let input = [
        "-s".to_owned(),
        format!("3,virtio-input,/dev/input/event{INPUT_EVENT}"),
    ];
    let pos = with
        .windows(2)
        .position(|w| w == input)
        .expect("input passed");
    let mut expected = with.clone();
    expected.drain(pos..pos + 2);
    assert_eq!(without, expected);
}
