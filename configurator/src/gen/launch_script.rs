//! ACRN's launch scripts: one `launch_user_vm_id<N>.sh` per post-launched VM, which prepares
//! the Service VM (CPUs, tap devices, passthrough devices) and starts `acrn-dm` with the
//! arguments ACRN's `launch_cfg_gen.py` derives from the same board and scenario: same order,
//! same PCI slots, same vUART indices and IVSHMEM names (reference data:
//! `../shared/reference/acrn-launch-params/`, checked by `tests/launch_scripts.rs`).
//!
//! `N` is the VM's scenario id minus the Service VM's, as ACRN numbers its scripts.
//!
//! Where we differ from ACRN's generator, on purpose ([`Difference`], also listed in each
//! script's header and in configurator/README.md):
//! * no firmware: our acrn-dm has no OVMF, so instead of `--ovmf ...` (or nothing, for
//!   `vbootloader` n) the script boots a kernel directly (`--kernel`, `--ramdisk`,
//!   `--bootargs`, overridable from the environment);
//! * a VM without `<memory>` gets `-m 1024M`, the size it really runs with, where ACRN writes
//!   `-m NoneM`, which acrn-dm cannot parse;
//! * `customized_parameters` are split into words (ACRN passes the whole text as one argument).
//!
//! The script is POSIX sh (it runs in a busybox Service VM) and quotes every value.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::board::{Bdf, Board};
use crate::diag::{Finding, Findings};
use crate::launch::{kernel_tag, DEFAULT_BOOTARGS};
use crate::scenario::{
    ConsoleBackend, ConsoleUseType, ConsoleVuart, DisplayType, LoadOrder, OsType, ProvidedBy,
    Scenario, Scheduler, VirtioFramework, Vm, VmType, VuartType,
};

/// Where ACRN installs OVMF; its generator passes this path for every `vbootloader` y VM.
pub const ACRN_OVMF_PATH: &str = "/usr/share/acrn/bios/OVMF.fd";

/// The logger levels ACRN's generator gives every VM (`add_logger_settings console=4 kmsg=3
/// disk=5`).
const LOGGER_SETTING: &str = "console,level=4;kmsg,level=3;disk,level=5";

/// ACRN's interrupt storm monitor for VMs with passthrough devices other than the GPU:
/// threshold per second, probe period (s), inject delay (ms), delay duration (ms).
const INTR_MONITOR: &str = "10000,10,1,100";

/// The script's file name for user VM id `n`.
pub fn file_name(user_vm_id: u32) -> String {
    format!("launch_user_vm_id{user_vm_id}.sh")
}

/// A deliberate difference from ACRN's generated arguments for one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Difference {
    /// `--ovmf` replaced by a direct kernel boot.
    KernelInsteadOfOvmf,
    /// `vbootloader` n: ACRN passes no boot source at all; we boot a kernel.
    KernelWithoutBootloader,
    /// No `<memory>`: `-m <default>M` instead of `-m NoneM`.
    DefaultMemory,
    /// `customized_parameters` split into words.
    CustomizedSplit,
}

impl Difference {
    /// One line for the script's header.
    pub fn describe(self) -> &'static str {
        match self {
            Self::KernelInsteadOfOvmf => {
                "ACRN passes `--ovmf /usr/share/acrn/bios/OVMF.fd`; this project's acrn-dm has no firmware, so the kernel is booted directly (--kernel, --ramdisk, --bootargs)"
            }
            Self::KernelWithoutBootloader => {
                "vbootloader is n: ACRN passes no boot source; this script boots a kernel directly (--kernel, --ramdisk, --bootargs)"
            }
            Self::DefaultMemory => {
                "the scenario gives no <memory>: ACRN writes `-m NoneM` (which acrn-dm rejects); this script passes the size the VM gets (the schema default)"
            }
            Self::CustomizedSplit => {
                "customized_parameters are split into words; ACRN passes them as one argument"
            }
        }
    }
}

/// One piece of an argument: fixed text, or a shell variable the script sets before launch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

type Word = Vec<Part>;

fn text(s: impl Into<String>) -> Word {
    vec![Part::Text(s.into())]
}

/// One group of acrn-dm arguments, rendered as one `set -- "$@" ...` line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Param {
    Words(Vec<Word>),
    /// `--kernel "$kernel" [--ramdisk "$ramdisk"] --bootargs "$bootargs"`.
    Kernel,
    /// Passed only when the shell variable (set before launch) is not empty.
    IfSet(String, Vec<Word>),
}

/// What the script does before starting acrn-dm, and the arguments it passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmScript {
    pub user_vm_id: u32,
    pub vm_name: String,
    pub differences: Vec<Difference>,
    params: Vec<Param>,
    /// Service VM CPUs (APIC IDs) handed to the hypervisor before launch.
    offline_apic_ids: Vec<u32>,
    /// Tap devices to create (ACRN's `create_tap`).
    taps: Vec<String>,
    /// Physical devices to take from their Service VM driver, `0000:BB:DD.F`.
    unbind: Vec<String>,
    /// (shell variable, block device) partitions mounted for virtio-blk images.
    mounts: Vec<(String, String)>,
    /// (shell variable, device name, physical path) of input devices looked up at launch.
    inputs: Vec<(String, String, String)>,
    needs_mac: bool,
    default_bootargs: String,
}

/// ACRN's virtual slot allocator: 0 hostbridge, 1 LPC, 2 the GPU, 31 the GPU's LPC bridge;
/// other devices take the lowest free slot of 3..29, after the slots named in the scenario
/// that were added before them.
struct Slots {
    free: Vec<u8>,
}

impl Slots {
    fn new() -> Self {
        Slots {
            free: (3..30).collect(),
        }
    }
    fn take(&mut self, slot: u8) {
        self.free.retain(|&s| s != slot);
    }
    fn next(&mut self) -> Option<u8> {
        (!self.free.is_empty()).then(|| self.free.remove(0))
    }
}

struct Builder<'a> {
    board: &'a Board,
    vm: &'a Vm,
    index: usize,
    scenario: &'a Scenario,
    script: VmScript,
    slots: Slots,
    rtvm: bool,
    /// Plain parameters ACRN adds once (`--virtio_poll`, `--intr_monitor`).
    once: BTreeSet<&'static str>,
    findings: Findings,
}

/// The launch script of every post-launched VM of a validated, default-populated scenario,
/// in scenario order. `Err` holds `A14` findings (a device whose argument cannot be derived).
pub fn scripts(board: &Board, scenario: &Scenario) -> Result<Vec<VmScript>, Findings> {
    let service_id = scenario
        .vms_of(LoadOrder::Service)
        .next()
        .map(|(_, v)| v.id);
    let mut out = Vec::new();
    let mut findings = Findings::new();
    for (index, vm) in scenario.vms_of(LoadOrder::PostLaunched) {
        // Validation (C14..C16) guarantees a Service VM with a smaller id whenever there are
        // post-launched VMs; a model that bypassed it gets no scripts rather than a panic.
        let Some(user_vm_id) = service_id.and_then(|s| vm.id.checked_sub(s)) else {
            continue;
        };
        match build(board, scenario, index, vm, user_vm_id) {
            Ok(s) => out.push(s),
            Err(f) => findings.extend(f),
        }
    }
    if findings.is_empty() {
        Ok(out)
    } else {
        Err(findings)
    }
}

fn build(
    board: &Board,
    scenario: &Scenario,
    index: usize,
    vm: &Vm,
    user_vm_id: u32,
) -> Result<VmScript, Findings> {
    let mut b = Builder {
        board,
        vm,
        index,
        scenario,
        script: VmScript {
            user_vm_id,
            vm_name: vm.name.clone(),
            differences: Vec::new(),
            params: Vec::new(),
            offline_apic_ids: Vec::new(),
            taps: Vec::new(),
            unbind: Vec::new(),
            mounts: Vec::new(),
            inputs: Vec::new(),
            needs_mac: false,
            default_bootargs: DEFAULT_BOOTARGS.to_owned(),
        },
        slots: Slots::new(),
        rtvm: vm.vm_type == Some(VmType::Rtvm),
        once: BTreeSet::new(),
        findings: Findings::new(),
    };
    b.vm_type_and_resources();
    b.platform_devices();
    b.ivshmem_and_vuarts();
    b.mediated_devices();
    b.passthrough_devices();
    b.miscellaneous();
    if b.findings.is_empty() {
        b.script.differences.sort();
        Ok(b.script)
    } else {
        Err(b.findings)
    }
}

impl Builder<'_> {
    fn plain(&mut self, words: &[&str]) {
        self.script
            .params
            .push(Param::Words(words.iter().map(|w| text(*w)).collect()));
    }

    fn plain_once(&mut self, key: &'static str, words: &[&str]) {
        if self.once.insert(key) {
            self.plain(words);
        }
    }

    fn error(&mut self, rel: &str, msg: String, hint: &str) {
        let at = self.scenario.spans.vm(self.index, rel);
        self.findings.push(
            Finding::error("A14", format!("VM \"{}\": {msg}", self.vm.name))
                .at_opt(at)
                .with_hint(hint),
        );
    }

    /// `-s SLOT,KIND[,OPTIONS]`; `slot` as ACRN writes it (`0:0`, `1:0`, or a number).
    fn device(&mut self, slot: Option<String>, kind: &str, options: Word, rel: &str) {
        if let Some(words) = self.device_words(slot, kind, options, rel) {
            self.script.params.push(Param::Words(words));
        }
    }

    /// The words of [`Self::device`], which the caller adds; `None` after an A14 finding.
    fn device_words(
        &mut self,
        slot: Option<String>,
        kind: &str,
        options: Word,
        rel: &str,
    ) -> Option<Vec<Word>> {
        if kind.contains("virtio") && self.rtvm {
            self.plain_once("virtio_poll", &["--virtio_poll", "1000000"]);
        }
        let slot = match slot {
            Some(s) => s,
            None => match self.slots.next() {
                Some(n) => n.to_string(),
                None => {
                    self.error(
                        rel,
                        format!("no free PCI slot for `{kind}` (slots 3..29 are all taken)"),
                        "remove devices from this VM; ACRN's launch scripts use slots 3 to 29",
                    );
                    return None;
                }
            },
        };
        let mut value = text(format!("{slot},{kind}"));
        if !options.is_empty() {
            value.push(Part::Text(",".into()));
            value.extend(options);
        }
        Some(vec![text("-s"), value])
    }

    /// A device at the slot of a vBDF the scenario gives (ACRN uses the device number, in
    /// decimal); without one, the next free slot.
    fn device_at(&mut self, dev: Option<u8>, kind: &str, options: Word, rel: &str) {
        if let Some(d) = dev {
            self.slots.take(d);
        }
        self.device(dev.map(|d| d.to_string()), kind, options, rel);
    }

    fn vm_type_and_resources(&mut self) {
        let vm = self.vm;
        if vm.os_type == Some(OsType::Windows) {
            self.plain(&["--windows"]);
        }
        let pcpus: BTreeSet<u32> = vm
            .cpu_affinity
            .iter()
            .flat_map(|a| &a.pcpu)
            .map(|p| p.pcpu_id)
            .collect();
        // ACRN skips (with a warning) pCPUs the board does not have; C01 reports them.
        let mut apic_ids: Vec<u32> = pcpus
            .iter()
            .filter_map(|&c| self.board.thread(c).map(|t| t.apic_id))
            .collect();
        apic_ids.sort_unstable();
        apic_ids.dedup();
        if !apic_ids.is_empty() {
            let list = apic_ids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",");
            self.plain(&["--cpu_affinity", &list]);
            // As ACRN's scripts: the Service VM gives up these CPUs only when the VM must own
            // them (an RTVM, own_pcpu, or the 1:1 NOOP scheduler); otherwise they are shared.
            let scheduler = self.scenario.hv.features.as_ref().and_then(|f| f.scheduler);
            if self.rtvm || vm.own_pcpu == Some(true) || scheduler == Some(Scheduler::Noop) {
                self.script.offline_apic_ids = apic_ids;
            }
        }
        if vm.memory.as_ref().and_then(|m| m.size).is_none() {
            self.script.differences.push(Difference::DefaultMemory);
        }
        self.plain(&["-m", &format!("{}M", vm.memory_size_mb())]);
        self.script
            .differences
            .push(if vm.vbootloader == Some(false) {
                Difference::KernelWithoutBootloader
            } else {
                Difference::KernelInsteadOfOvmf
            });
        self.script.params.push(Param::Kernel);
    }

    fn platform_devices(&mut self) {
        if !self.rtvm {
            self.device(Some("1:0".into()), "lpc", Vec::new(), "");
        }
        if self.vm.vuart0 == Some(true) {
            self.plain(&["-l", "com1,stdio"]);
        }
        self.device(Some("0:0".into()), "hostbridge", Vec::new(), "");
    }

    fn ivshmem_and_vuarts(&mut self) {
        let name = &self.vm.name;
        // Device-model regions first, then the hypervisor's, each in file order.
        for (provider, prefix) in [
            (ProvidedBy::DeviceModel, "dm"),
            (ProvidedBy::Hypervisor, "hv"),
        ] {
            let regions: Vec<_> = self
                .scenario
                .hv
                .ivshmem_regions()
                .filter(|r| r.provided_by == Some(provider))
                .filter_map(|r| {
                    let member = r.vms.vm.iter().find(|m| &m.vm_name == name)?;
                    Some((r, member.vbdf.map(|b| b.dev)))
                })
                .collect();
            for (r, dev) in regions {
                let options = format!(
                    "{prefix}:/{},{},{}",
                    r.name,
                    r.size_mb.unwrap_or_default(),
                    r.region_id.as_deref().unwrap_or("0").trim()
                );
                self.device_at(dev, "ivshmem", text(options), "");
            }
        }
        if self.vm.console_vuart == Some(ConsoleVuart::Pci) {
            self.device(None, "uart", text("vuart_idx:0"), "console_vuart");
        }
        // Every connection of this VM counts for the index, legacy ones too, as in ACRN.
        let connections: Vec<_> = self
            .scenario
            .hv
            .vuart_connections
            .iter()
            .flat_map(|c| &c.connections)
            .filter(|c| c.endpoints.iter().any(|e| &e.vm_name == name))
            .collect();
        for (idx, c) in connections.into_iter().enumerate() {
            if c.vuart_type == Some(VuartType::Pci) {
                let dev = c
                    .endpoints
                    .iter()
                    .find(|e| &e.vm_name == name)
                    .and_then(|e| e.vbdf)
                    .map(|b| b.dev);
                self.device_at(dev, "uart", text(format!("vuart_idx:{}", idx + 1)), "");
            }
        }
    }

    fn mediated_devices(&mut self) {
        let usb: Vec<String> = self
            .vm
            .usb_xhci
            .iter()
            .flat_map(|u| &u.usb_dev)
            .filter(|d| !d.is_empty())
            .filter_map(|d| d.split(' ').next().map(str::to_owned))
            .collect();
        if !usb.is_empty() {
            self.device(None, "xhci", text(usb.join(",")), "usb_xhci");
        }
        let Some(vd) = self.vm.virtio_devices.as_ref() else {
            return;
        };
        for (i, input) in vd.input.iter().enumerate() {
            let file = input
                .backend_device_file
                .as_deref()
                .filter(|s| !s.is_empty());
            let id = input.id.as_deref().filter(|s| !s.is_empty());
            // ACRN adds no device for an input without a backend.
            let Some(file) = file else { continue };
            let rel = format!("virtio_devices/input[{i}]");
            // The configurator names a board's input device by its name and physical path;
            // as in ACRN, the script finds its /dev/input/eventN at launch and leaves the
            // device out (with a warning) when the Service VM does not have it. The slot is
            // taken either way. ACRN then appends the id without its `id:` prefix.
            let by_name = file
                .strip_prefix("Device name: ")
                .and_then(|r| r.rsplit_once(", Device physical path: "));
            let Some((name, phys)) = by_name else {
                let options = match id {
                    Some(id) => format!("{file},id:{id}"),
                    None => file.to_owned(),
                };
                self.device(None, "virtio-input", text(options), &rel);
                continue;
            };
            let var = format!("input_{i}");
            self.script
                .inputs
                .push((var.clone(), name.to_owned(), phys.to_owned()));
            let mut options = vec![Part::Var(var.clone())];
            if let Some(id) = id {
                options.push(Part::Text(format!(",{id}")));
            }
            if let Some(words) = self.device_words(None, "virtio-input", options, &rel) {
                self.script.params.push(Param::IfSet(var, words));
            }
        }
        for (i, console) in vd.console.iter().enumerate() {
            let rel = format!("virtio_devices/console[{i}]");
            let mask = if console.use_type == Some(ConsoleUseType::Console) {
                "@"
            } else {
                ""
            };
            let path = |p: &Option<String>| p.clone().filter(|s| !s.is_empty());
            let options = match console.backend_type {
                Some(ConsoleBackend::File) => path(&console.output_file_path)
                    .map(|p| format!("{mask}file:file_port={p}"))
                    .ok_or("output_file_path"),
                Some(ConsoleBackend::Tty) => path(&console.tty_device_path)
                    .map(|p| format!("{mask}tty:tty_port={p}"))
                    .ok_or("tty_device_path"),
                Some(b @ (ConsoleBackend::SockServer | ConsoleBackend::SockClient)) => {
                    path(&console.sock_file_path)
                        .map(|p| {
                            let base = p.rsplit('/').next().unwrap_or(&p);
                            let stem = base.split('.').next().unwrap_or(base);
                            let side = if b == ConsoleBackend::SockServer {
                                "server"
                            } else {
                                "client"
                            };
                            format!("socket:{stem}={p}:{side}")
                        })
                        .ok_or("sock_file_path")
                }
                Some(b @ (ConsoleBackend::Pty | ConsoleBackend::Stdio)) => {
                    Ok(format!("{mask}{b}:{b}_port"))
                }
                None => Ok(format!("{mask}stdio:stdio_port")),
            };
            match options {
                Ok(o) => self.device(None, "virtio-console", text(o), &rel),
                Err(missing) => self.error(
                    &rel,
                    format!(
                        "virtio console {i} (backend `{}`) has no {missing}",
                        console.backend_type.map_or("stdio", |b| b.as_str())
                    ),
                    &format!("add <{missing}> to this console, or pick another backend_type"),
                ),
            }
        }
        for (i, net) in vd.network.iter().enumerate() {
            let rel = format!("virtio_devices/network[{i}]");
            let Some(iface) = net.interface_name.as_deref().filter(|s| !s.is_empty()) else {
                self.error(
                    &rel,
                    format!("virtio network {i} has no interface_name"),
                    "give the tap device's name in <interface_name>, e.g. tap0",
                );
                continue;
            };
            let (tap, rest) = match iface.split_once(',') {
                Some((t, r)) => (t, Some(r)),
                None => (iface, None),
            };
            let mut opts = format!("tap={tap}");
            if let Some(r) = rest {
                opts.push(',');
                opts.push_str(r);
            }
            if net.virtio_framework == Some(VirtioFramework::KernelVhost) {
                opts.push_str(",vhost");
            }
            opts.push_str(",mac_seed=");
            let mut word = text(opts);
            word.push(Part::Var("mac".into()));
            word.push(Part::Text(format!("-{}", self.vm.name)));
            self.script.needs_mac = true;
            if !self.script.taps.iter().any(|t| t == tap) {
                self.script.taps.push(tap.to_owned());
            }
            self.device(None, "virtio-net", word, &rel);
        }
        for (i, block) in vd.block.iter().enumerate() {
            if block.is_empty() {
                continue;
            }
            let rel = format!("virtio_devices/block[{i}]");
            // `DEVICE:IMAGE`: the image is a file on that partition, mounted for the run.
            let word = match block.split_once(':') {
                None => text(block.as_str()),
                Some((dev, image)) => {
                    let base = dev.rsplit('/').next().unwrap_or(dev);
                    let var = format!(
                        "dir_{}",
                        base.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                    );
                    if !self.script.mounts.iter().any(|(v, _)| *v == var) {
                        self.script.mounts.push((var.clone(), dev.to_owned()));
                    }
                    let image = image.trim_start_matches('/');
                    vec![Part::Var(var), Part::Text(format!("/{image}"))]
                }
            };
            self.device(None, "virtio-blk", word, &rel);
        }
        if let Some(gpu) = vd.gpu.as_ref() {
            if let Some(kind) = gpu.display_type {
                let geometries: Vec<String> = gpu
                    .displays
                    .iter()
                    .flat_map(|d| &d.display)
                    .map(|d| match kind {
                        DisplayType::Window => format!(
                            "geometry={}+{}+{}",
                            d.window_resolutions.as_deref().unwrap_or_default(),
                            d.horizontal_offset.unwrap_or_default(),
                            d.vertical_offset.unwrap_or_default()
                        ),
                        DisplayType::FullScreen => {
                            format!("geometry=fullscreen:{}", d.monitor_id.unwrap_or_default())
                        }
                    })
                    .collect();
                self.device(
                    None,
                    "virtio-gpu",
                    text(geometries.join(",")),
                    "virtio_devices/gpu",
                );
            }
        }
        for (i, cid) in vd.vsock.iter().enumerate() {
            self.device(
                None,
                "vhost-vsock",
                text(format!("cid={cid}")),
                &format!("virtio_devices/vsock[{i}]"),
            );
        }
    }

    fn passthrough_devices(&mut self) {
        let devs: Vec<Bdf> = self
            .vm
            .pci_devs
            .iter()
            .flat_map(|p| &p.pci_dev)
            .filter_map(|d| leading_bdf(d))
            .collect();
        for (i, bdf) in devs.into_iter().enumerate() {
            let node = self.board.pci_function(bdf);
            let class = node.and_then(|n| n.class);
            let mut options = Vec::new();
            // ACRN's per-class options: PTM for Ethernet controllers of a VM with PTM on,
            // d3hot_reset for xHCI controllers of Windows VMs.
            if class.is_some_and(|c| c >> 8 == 0x0200) && self.vm.ptm == Some(true) {
                options.push("enable_ptm");
            }
            if class == Some(0x0c0330) && self.vm.os_type == Some(OsType::Windows) {
                options.push("d3hot_reset");
            }
            let physical = format!("0000:{:02x}:{:02x}.{}", bdf.bus, bdf.device, bdf.function);
            // The VGA controller (integrated or discrete GPU) always sits at slot 2.
            let slot = if class == Some(0x030000) {
                Some(2)
            } else {
                self.slots.next()
            };
            let Some(slot) = slot else {
                self.error(
                    &format!("pci_devs/pci_dev[{i}]"),
                    format!("no free PCI slot for passthrough device {physical}"),
                    "remove devices from this VM; ACRN's launch scripts use slots 3 to 29",
                );
                continue;
            };
            let mut value = format!(
                "{slot},passthru,{:x}/{:x}/{:x}",
                bdf.bus, bdf.device, bdf.function
            );
            for o in &options {
                value.push(',');
                value.push_str(o);
            }
            self.script
                .params
                .push(Param::Words(vec![text("-s"), text(value)]));
            if !self.script.unbind.contains(&physical) {
                self.script.unbind.push(physical);
            }
            if slot != 2 {
                self.plain_once("intr_monitor", &["--intr_monitor", INTR_MONITOR]);
            }
        }
    }

    fn miscellaneous(&mut self) {
        if self.rtvm {
            self.plain(&["--rtvm"]);
            if self.vm.lapic_passthrough == Some(true) {
                self.plain(&["--lapic_pt"]);
            }
        }
        self.plain(&["--logger_setting", LOGGER_SETTING]);
        if let Some(custom) = self
            .vm
            .customized_parameters
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        {
            let words: Vec<&str> = custom.split_whitespace().collect();
            if words.len() > 1 {
                self.script.differences.push(Difference::CustomizedSplit);
            }
            self.plain(&words);
        }
        let name = self.vm.name.clone();
        self.plain(&[&name]);
    }
}

/// The BDF a `pci_dev` entry starts with (`BB:DD.F description`), as ACRN's generator reads
/// it; entries that do not start with one are skipped, as there.
pub(crate) fn leading_bdf(entry: &str) -> Option<Bdf> {
    let s = entry.trim_start();
    let b = s.as_bytes();
    if b.len() < 7 || b[2] != b':' || b[5] != b'.' {
        return None;
    }
    let hex = |r: std::ops::Range<usize>| u8::from_str_radix(s.get(r)?, 16).ok();
    let bus = hex(0..2)?;
    let dev = hex(3..5)?;
    let func = (b[6] as char).to_digit(8)?;
    if b.len() > 7 && !b[7].is_ascii_whitespace() {
        return None;
    }
    Bdf::new(bus.into(), dev.into(), func)
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b",._-+/:=@".contains(&c))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn render_word(w: &Word) -> String {
    let mut out = String::new();
    for p in w {
        match p {
            Part::Text(t) => out.push_str(&sh_quote(t)),
            Part::Var(v) => {
                let _ = write!(out, "\"${{{v}}}\"");
            }
        }
    }
    out
}

/// A comment line's text, kept on one line and free of control characters.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl VmScript {
    pub fn file_name(&self) -> String {
        file_name(self.user_vm_id)
    }

    /// The script's text. `board` and `scenario` name the files in its header.
    pub fn render(&self, board: &str, scenario: &str) -> String {
        let name = &self.vm_name;
        let mut s = String::new();
        let _ = writeln!(s, "#!/bin/sh");
        let _ = writeln!(
            s,
            "# Launches post-launched VM {} (user VM id {}) of scenario {} on board {}.",
            comment(name),
            self.user_vm_id,
            comment(scenario),
            comment(board)
        );
        s.push_str(
            "# Generated by acrn-configurator: regenerate it from the scenario rather than editing it.\n\
             #\n\
             # The acrn-dm arguments are the ones ACRN's launch_cfg_gen.py derives from the same\n\
             # board and scenario (same order, PCI slots, vUART indices and IVSHMEM names), except:\n",
        );
        for d in &self.differences {
            let _ = writeln!(s, "#   - {}", d.describe());
        }
        let shown = comment(name);
        let _ = write!(
            s,
            "#\n\
             # Environment:\n\
             #   ACRN_DM            the device model to run (default: acrn-dm on PATH)\n\
             #   ACRN_UVM_KERNEL    the VM's kernel (default: {shown}_kernel beside this script)\n\
             #   ACRN_UVM_RAMDISK   its initramfs (default: {shown}_ramdisk beside this script, if there)\n\
             #   ACRN_UVM_BOOTARGS  its command line (default: {})\n\
             #   ACRN_SYSFS, ACRN_PROCFS  where sysfs and procfs are (default: /sys, /proc)\n\
             \n\
             set -eu\n\
             \n",
            comment(&self.default_bootargs)
        );
        let _ = writeln!(s, "vm_name={}", sh_quote(name));
        s.push_str("script_dir=$(dirname \"$0\")\nacrn_dm=${ACRN_DM:-acrn-dm}\n");
        let offlines = !self.offline_apic_ids.is_empty();
        if offlines
            || self.needs_mac
            || !self.taps.is_empty()
            || !self.unbind.is_empty()
            || !self.inputs.is_empty()
        {
            s.push_str("sysfs=${ACRN_SYSFS:-/sys}\n");
        }
        if offlines {
            s.push_str("procfs=${ACRN_PROCFS:-/proc}\n");
        }
        let _ = writeln!(
            s,
            "kernel=${{ACRN_UVM_KERNEL:-$script_dir/{}}}",
            sh_quote(&kernel_tag(name))
        );
        let _ = writeln!(
            s,
            "ramdisk=${{ACRN_UVM_RAMDISK:-}}\nramdisk_beside=$script_dir/{}",
            sh_quote(&format!("{name}_ramdisk"))
        );
        s.push_str(
            "if [ -z \"$ramdisk\" ] && [ -e \"$ramdisk_beside\" ]; then\n    ramdisk=$ramdisk_beside\nfi\n",
        );
        let _ = writeln!(s, "default_bootargs={}", sh_quote(&self.default_bootargs));
        s.push_str("bootargs=${ACRN_UVM_BOOTARGS:-$default_bootargs}\n");
        s.push('\n');
        for (used, helper) in [
            (offlines, OFFLINE_CPUS),
            (!self.unbind.is_empty(), UNBIND_DEVICE),
            (!self.taps.is_empty(), CREATE_TAP),
            (!self.mounts.is_empty(), MOUNT_PARTITION),
            (!self.inputs.is_empty(), INPUT_EVENT),
        ] {
            if used {
                s.push_str(helper);
                s.push('\n');
            }
        }

        if self.needs_mac {
            s.push_str(
                "# The MAC seed: the address of the Service VM's first Ethernet interface, as in ACRN.\n\
                 mac=$(cat \"$sysfs\"/class/net/e*/address 2>/dev/null | head -n 1)\n",
            );
        }
        for tap in &self.taps {
            let _ = writeln!(s, "create_tap {}", sh_quote(tap));
        }
        if !self.offline_apic_ids.is_empty() {
            let ids: Vec<String> = self.offline_apic_ids.iter().map(u32::to_string).collect();
            let _ = writeln!(
                s,
                "# The VM owns its pCPUs (RTVM, own_pcpu or SCHED_NOOP): the Service VM gives them up.\n\
                 offline_cpus {}",
                ids.join(" ")
            );
        }
        for bdf in &self.unbind {
            let _ = writeln!(s, "unbind_device {bdf}");
        }
        for (var, dev) in &self.mounts {
            let _ = writeln!(s, "{var}=$(mount_partition {})", sh_quote(dev));
        }
        for (var, name, phys) in &self.inputs {
            let _ = writeln!(
                s,
                "{var}=$(input_event {} {})",
                sh_quote(name),
                sh_quote(phys)
            );
        }
        s.push_str("set --\n");
        for p in &self.params {
            match p {
                Param::Words(words) => {
                    let rendered: Vec<String> = words.iter().map(render_word).collect();
                    let _ = writeln!(s, "set -- \"$@\" {}", rendered.join(" "));
                }
                Param::IfSet(var, words) => {
                    let rendered: Vec<String> = words.iter().map(render_word).collect();
                    let _ = writeln!(
                        s,
                        "if [ -n \"${{{var}}}\" ]; then\n    set -- \"$@\" {}\nfi",
                        rendered.join(" ")
                    );
                }
                Param::Kernel => s.push_str(
                    "set -- \"$@\" --kernel \"$kernel\"\n\
                     if [ -n \"$ramdisk\" ]; then\n    set -- \"$@\" --ramdisk \"$ramdisk\"\nfi\n\
                     set -- \"$@\" --bootargs \"$bootargs\"\n",
                ),
            }
        }
        s.push_str("\necho \"$vm_name: $acrn_dm $*\" >&2\n");
        if self.mounts.is_empty() {
            // acrn-dm replaces the shell: signals reach it directly and its status is ours.
            s.push_str("exec \"$acrn_dm\" \"$@\"\n");
        } else {
            s.push_str("status=0\n\"$acrn_dm\" \"$@\" || status=$?\n");
            for (var, _) in &self.mounts {
                let _ = writeln!(s, "unmount_partition \"${{{var}}}\"");
            }
            s.push_str("exit \"$status\"\n");
        }
        s
    }
}

// The script's shell functions (ours; the behaviour is that of ACRN's scripts), each
// included only in scripts that call it.

/// `offline_cpus`.
const OFFLINE_CPUS: &str = r#"# offline_cpus APIC_ID...: hands these pCPUs over to the VM. Each Service VM CPU with one
# of these APIC IDs goes offline (cpuN/online), then the HSM's remove_cpu makes the hypervisor
# take it back (HC_SERVICE_VM_OFFLINE_CPU). A CPU /proc/cpuinfo no longer lists was given up
# by an earlier launch; CPU 0 stays.
offline_cpus() {
    for apic_id in "$@"; do
        cpu=$(awk -v want="$apic_id" '$1 == "processor" { cpu = $3 } $1 == "apicid" && $3 == want { print cpu; exit }' "$procfs/cpuinfo")
        if [ -z "$cpu" ] || [ "$cpu" = 0 ]; then
            continue
        fi
        online="$sysfs/devices/system/cpu/cpu$cpu/online"
        if [ -f "$online" ] && [ "$(cat "$online")" = 1 ]; then
            echo 0 > "$online"
        fi
        if ! echo "$cpu" > "$sysfs/devices/virtual/misc/acrn_hsm/remove_cpu"; then
            echo "$vm_name: the hypervisor did not take CPU $cpu (APIC ID $apic_id) from the Service VM" >&2
            exit 1
        fi
    done
}
"#;

/// `unbind_device`.
const UNBIND_DEVICE: &str = r#"# unbind_device 0000:BB:DD.F: takes a passthrough device from its Service VM driver and parks
# it on pci-stub when that driver is there. A device no driver enabled is enabled first (and
# stays so): Linux routes its INTx through ACPI then and keeps the mapping, from which acrn-dm
# reads the GSI.
unbind_device() {
    dev="$sysfs/bus/pci/devices/$1"
    if [ ! -d "$dev" ]; then
        echo "$vm_name: passthrough device $1 is not in the Service VM" >&2
        exit 1
    fi
    if [ "$(cat "$dev/enable" 2>/dev/null)" = 0 ]; then
        echo 1 > "$dev/enable" 2>/dev/null || true
    fi
    stub="$sysfs/bus/pci/drivers/pci-stub"
    if [ -d "$stub" ]; then
        printf '%04x %04x\n' "$(cat "$dev/vendor")" "$(cat "$dev/device")" > "$stub/new_id" || true
    fi
    if [ -e "$dev/driver" ]; then
        echo "$1" > "$dev/driver/unbind"
    fi
    if [ -d "$stub" ]; then
        echo "$1" > "$stub/bind" || true
    fi
}
"#;

/// `create_tap`.
const CREATE_TAP: &str = r#"# create_tap NAME: the VM's tap device, added to the acrn-br0 bridge when there is one.
create_tap() {
    if [ -e "$sysfs/class/net/$1" ]; then
        return
    fi
    ip tuntap add dev "$1" mode tap
    if [ -e "$sysfs/class/net/acrn-br0" ]; then
        ip link set "$1" master acrn-br0
    fi
    ip link set dev "$1" up
}
"#;

/// `input_event`.
const INPUT_EVENT: &str = r#"# input_event NAME PHYS: the /dev/input/eventN of the input device with this name and
# physical path, or nothing (with a warning) when the Service VM has no such device.
input_event() {
    for ev in "$sysfs"/class/input/event*; do
        if [ "$(cat "$ev/device/name" 2>/dev/null)" = "$1" ] && [ "$(cat "$ev/device/phys" 2>/dev/null)" = "$2" ]; then
            echo "/dev/input/${ev##*/}"
            return
        fi
    done
    echo "$vm_name: no input device \"$1\" at $2 in the Service VM; the VM gets no virtio-input for it" >&2
}
"#;

/// `mount_partition` and `unmount_partition`.
const MOUNT_PARTITION: &str = r#"# mount_partition DEVICE: mounts it on a new directory and prints the directory.
mount_partition() {
    dir=$(mktemp -d)
    mount "$1" "$dir"
    echo "$dir"
}

unmount_partition() {
    umount "$1"
    rmdir "$1"
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{
        IvshmemRegion, IvshmemVm, IvshmemVms, Vbdf, VirtioConsole, VirtioDevices, VmMemory,
    };
    use std::path::Path;

    fn load(scen: &str) -> (Board, Scenario) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/qemu-epyc");
        let r = crate::validate(
            &dir.join("qemu-epyc.xml"),
            &dir.join(scen),
            &crate::ValidateOptions::default(),
        );
        (r.board.unwrap(), r.scenario.unwrap())
    }

    /// The arguments of a script, shell variables shown as `$name`.
    fn argv(s: &VmScript) -> Vec<String> {
        let word = |w: &Word| {
            w.iter()
                .map(|p| match p {
                    Part::Text(t) => t.clone(),
                    Part::Var(v) => format!("${v}"),
                })
                .collect::<String>()
        };
        let mut out = Vec::new();
        for p in &s.params {
            match p {
                Param::Words(ws) | Param::IfSet(_, ws) => out.extend(ws.iter().map(word)),
                Param::Kernel => out.push("KERNEL".into()),
            }
        }
        out
    }

    /// POST_VM1 of qemu-epyc's shared scenario after `edit`.
    fn post_vm1(edit: impl FnOnce(&mut Scenario)) -> Result<VmScript, Findings> {
        let (b, mut s) = load("shared.xml");
        edit(&mut s);
        scripts(&b, &s).map(|v| v.into_iter().next().unwrap())
    }

    #[test]
    fn device_model_ivshmem_pci_console_and_vuart_indices_follow_acrn() {
        let script = post_vm1(|s| {
            s.vm[1].console_vuart = Some(ConsoleVuart::Pci);
            let region = |name: &str, by, dev| IvshmemRegion {
                name: name.into(),
                provided_by: Some(by),
                size_mb: Some(4),
                region_id: Some("1".into()),
                vms: IvshmemVms {
                    vm: vec![IvshmemVm {
                        vm_name: "POST_VM1".into(),
                        vbdf: Some(Vbdf {
                            bus: 0,
                            dev,
                            func: 0,
                        }),
                    }],
                },
            };
            let f = s.hv.features.get_or_insert_with(Default::default);
            f.ivshmem.get_or_insert_with(Default::default).regions = vec![
                region("hv_first", ProvidedBy::Hypervisor, 9),
                region("dm_second", ProvidedBy::DeviceModel, 8),
            ];
        })
        .unwrap();
        let args = argv(&script);
        let from = args.iter().position(|a| a == "0:0,hostbridge").unwrap() + 1;
        // Device-model regions first; the console's vUART takes the first free slot (3).
        assert_eq!(
            args[from..from + 6],
            [
                "-s",
                "8,ivshmem,dm:/dm_second,4,1",
                "-s",
                "9,ivshmem,hv:/hv_first,4,1",
                "-s",
                "3,uart,vuart_idx:0"
            ]
        );
    }

    #[test]
    fn a_vm_without_bootloader_or_memory_and_customized_parameters() {
        let script = post_vm1(|s| {
            s.vm[1].vbootloader = Some(false);
            s.vm[1].memory = Some(VmMemory::default());
            s.vm[1].customized_parameters = Some("--debugexit  --virtio_msi".into());
        })
        .unwrap();
        assert_eq!(
            script.differences,
            [
                Difference::KernelWithoutBootloader,
                Difference::DefaultMemory,
                Difference::CustomizedSplit
            ]
        );
        let args = argv(&script);
        assert!(args.windows(3).any(|w| w == ["-m", "1024M", "KERNEL"]));
        assert_eq!(
            args[args.len() - 3..],
            ["--debugexit", "--virtio_msi", "POST_VM1"]
        );
    }

    #[test]
    fn underivable_devices_are_a14() {
        let console = post_vm1(|s| {
            s.vm[1].virtio_devices = Some(VirtioDevices {
                console: vec![VirtioConsole {
                    backend_type: Some(ConsoleBackend::File),
                    ..Default::default()
                }],
                ..Default::default()
            });
        })
        .unwrap_err();
        let f: Vec<_> = console.iter().collect();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].check, "A14");
        assert!(
            f[0].message.contains("no output_file_path"),
            "{}",
            f[0].message
        );
        // Slots 3..29 hold 27 devices.
        let full = post_vm1(|s| {
            s.vm[1].virtio_devices = Some(VirtioDevices {
                block: (0..28).map(|i| format!("/disk{i}.img")).collect(),
                ..Default::default()
            });
        })
        .unwrap_err();
        let f: Vec<_> = full.iter().collect();
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message.contains("no free PCI slot"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn leading_bdfs_are_read_like_acrn() {
        assert_eq!(
            leading_bdf("00:1f.3 Audio device: Intel"),
            Bdf::new(0, 0x1f, 3)
        );
        assert_eq!(leading_bdf("c0:02.0"), Bdf::new(0xc0, 2, 0));
        assert_eq!(leading_bdf("00:02.8 x"), None);
        assert_eq!(leading_bdf("0:02.0"), None);
        assert_eq!(leading_bdf("00:02.01"), None);
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(sh_quote("0:0,hostbridge"), "0:0,hostbridge");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(sh_quote(""), "''");
        let w = vec![
            Part::Text("tap=t,mac_seed=".into()),
            Part::Var("mac".into()),
        ];
        assert_eq!(render_word(&w), "tap=t,mac_seed=\"${mac}\"");
    }
}
