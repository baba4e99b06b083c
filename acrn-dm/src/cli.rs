//! The command line, compatible with ACRN's `acrn-dm` for what ACRN's launch-script generator
//! writes (`devicemodel/core/main.c` option names and argument forms).
//!
//! Every option ACRN knows is recognised: the ones this device model implements are parsed into
//! [`DmConfig`]; the others are rejected with [`CliError::UnsupportedOption`] naming them, never
//! silently ignored.

pub use crate::monitor::IntrMonitorSetting;
use std::path::PathBuf;

/// ACRN's minimum guest memory (`vm_parse_memsize`).
pub const MIN_MEM_SIZE: u64 = 128 << 20;
/// ACRN's default guest memory when `-m` is absent.
pub const DEFAULT_MEM_SIZE: u64 = 256 << 20;
/// Longest VM name: `MAX_VM_NAME_LEN` (16) including the NUL.
pub const MAX_VM_NAME: usize = 15;

/// Everything wrong with a command line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// An option that takes a value came last.
    #[error("option {option} needs a value")]
    MissingValue {
        /// The option.
        option: String,
    },
    /// Not an acrn-dm option at all.
    #[error("unknown option {0}; run `acrn-dm --help` for the supported ones")]
    UnknownOption(String),
    /// An ACRN option this device model does not implement.
    #[error("option {option} is not supported by this acrn-dm: {reason}")]
    UnsupportedOption {
        /// The option as given.
        option: String,
        /// Why, and what to use instead.
        reason: &'static str,
    },
    /// An option's value is malformed.
    #[error("{option} {value:?}: {reason}")]
    BadValue {
        /// The option.
        option: String,
        /// Its value.
        value: String,
        /// The rule broken and how to fix it.
        reason: String,
    },
    /// A `-s` device kind ACRN has but this device model does not.
    #[error("-s {arg}: device {device:?} is not supported by this acrn-dm ({reason})")]
    UnsupportedDevice {
        /// The whole `-s` argument.
        arg: String,
        /// The emulation name.
        device: String,
        /// Why.
        reason: &'static str,
    },
    /// Two devices on one slot/function.
    #[error("-s {arg}: PCI {addr} is already used by another -s device")]
    DuplicateSlot {
        /// The second `-s` argument.
        arg: String,
        /// The contested address.
        addr: PciAddr,
    },
    /// No VM name at the end.
    #[error("missing the VM name (the last argument)")]
    MissingVmName,
    /// Words after the VM name.
    #[error("unexpected argument {0:?} after the VM name")]
    Trailing(String),
}

/// A PCI bus/device/function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PciAddr {
    /// Bus.
    pub bus: u8,
    /// Device (0..32).
    pub dev: u8,
    /// Function (0..8).
    pub func: u8,
}

impl std::fmt::Display for PciAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// Backend of a console-like port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CharBackend {
    /// acrn-dm's own stdin/stdout.
    Stdio,
    /// A new pseudo-terminal (its path is printed, and linked at the given path if any).
    Pty(Option<PathBuf>),
    /// Output appended to a file.
    File(PathBuf),
    /// An existing tty device.
    Tty(PathBuf),
}

/// One port of a virtio-console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsolePort {
    /// `@` prefix: this port is the guest's console (hvc).
    pub is_console: bool,
    /// The port name the guest sees.
    pub name: String,
    /// Where its bytes go.
    pub backend: CharBackend,
}

/// The two kinds of IVSHMEM ACRN has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvshmemLand {
    /// `dm:/` — acrn-dm backs the region with its own shared memory.
    DeviceModel,
    /// `hv:/` — the hypervisor owns the region (`HC_ADD_VDEV`).
    Hypervisor,
}

/// Backend of a `-s N,uart,...` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UartBackend {
    /// `vuart_idx:N`: the hypervisor's PCI vUART (MCS9900) number N.
    HvVuart(u32),
    /// A device-model 16550 on this backend.
    Dm(CharBackend),
}

/// A `-s` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// `hostbridge`: the PCI host bridge at 0:0.0.
    Hostbridge,
    /// `lpc`: the ISA bridge that carries the COM ports of `-l`.
    Lpc,
    /// `virtio-blk,PATH[,ro]`: a raw image file.
    VirtioBlk {
        /// The image.
        path: PathBuf,
        /// Guest may not write.
        read_only: bool,
    },
    /// `virtio-console,[@]KIND:NAME[=PATH][,...]`.
    VirtioConsole(Vec<ConsolePort>),
    /// `virtio-net,tap=NAME[,mac_seed=SEED]` (or ACRN's older `tap_NAME`).
    VirtioNet {
        /// The host tap interface.
        tap: String,
        /// Seed of the guest MAC address.
        mac_seed: Option<String>,
    },
    /// `uart,vuart_idx:N` or `uart,BACKEND`.
    Uart(UartBackend),
    /// `ivshmem,dm:/NAME,SIZE_MB` or `ivshmem,hv:/NAME,SIZE_MB[,N]`.
    Ivshmem {
        /// Who owns the region.
        land: IvshmemLand,
        /// Region name (without the prefix).
        name: String,
        /// Size in MiB: a power of two, 2..1024 as ACRN requires.
        size_mib: u32,
        /// The trailing number ACRN's newer generator appends (region/interrupt id).
        region_id: Option<u32>,
    },
    /// `passthru,BUS/DEV/FUNC[,opts]`: a host PCI function.
    Passthru {
        /// Host address (hex in the argument).
        host: PciAddr,
        /// ACRN's extra options (`gpu`, `d3hot_reset`, `enable_ptm`, ...), kept as given.
        opts: Vec<String>,
    },
}

impl Device {
    /// The `-s` emulation name.
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Hostbridge => "hostbridge",
            Device::Lpc => "lpc",
            Device::VirtioBlk { .. } => "virtio-blk",
            Device::VirtioConsole(_) => "virtio-console",
            Device::VirtioNet { .. } => "virtio-net",
            Device::Uart(_) => "uart",
            Device::Ivshmem { .. } => "ivshmem",
            Device::Passthru { .. } => "passthru",
        }
    }
}

/// A `-s` argument: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotDevice {
    /// Guest PCI address.
    pub addr: PciAddr,
    /// The device.
    pub device: Device,
}

/// One `-l` entry: `com1..com4,BACKEND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LpcPort {
    /// 1..=4.
    pub com: u8,
    /// Backend.
    pub backend: CharBackend,
}

/// `--logger_setting console,level=N;kmsg,level=N;disk,level=N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoggerSetting {
    /// Level for messages on stderr (ACRN: 1 error .. 6 debug).
    pub console: Option<u8>,
    /// Level for /dev/kmsg.
    pub kmsg: Option<u8>,
    /// Level for the disk log.
    pub disk: Option<u8>,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmConfig {
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// `-s` devices in command-line order.
    pub devices: Vec<SlotDevice>,
    /// `-l` ports.
    pub lpc_ports: Vec<LpcPort>,
    /// `-k/--kernel`: a bzImage.
    pub kernel: Option<PathBuf>,
    /// `-r/--ramdisk`.
    pub ramdisk: Option<PathBuf>,
    /// `-B/--bootargs`.
    pub bootargs: Option<String>,
    /// `--cpu_affinity`: LAPIC IDs of the pCPUs the VM runs on.
    pub cpu_affinity: Vec<u32>,
    /// `--lapic_pt` (ACRN honours it only with `--rtvm`).
    pub lapic_pt: bool,
    /// `--rtvm`.
    pub rtvm: bool,
    /// `--virtio_poll NS`: virtio queues polled every NS nanoseconds.
    pub virtio_poll_ns: Option<u64>,
    /// `--intr_monitor THRESHOLD,PERIOD,DELAY,DURATION`.
    pub intr_monitor: Option<IntrMonitorSetting>,
    /// `--logger_setting`.
    pub logger: LoggerSetting,
    /// The VM name (selects the hypervisor's VM configuration).
    pub vm_name: String,
}

impl DmConfig {
    /// Whether a device takes input from and writes to acrn-dm's stdin/stdout.
    pub fn uses_stdio(&self) -> bool {
        self.lpc_ports
            .iter()
            .any(|p| p.backend == CharBackend::Stdio)
            || self.devices.iter().any(|d| match &d.device {
                Device::VirtioConsole(ports) => {
                    ports.iter().any(|p| p.backend == CharBackend::Stdio)
                }
                Device::Uart(UartBackend::Dm(b)) => *b == CharBackend::Stdio,
                _ => false,
            })
    }
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run a VM.
    Run(Box<DmConfig>),
    /// `-h/--help`.
    Help,
    /// `-v/--version`.
    Version,
}

/// Usage text.
pub const USAGE: &str = "\
usage: acrn-dm [-hv] [-k|--kernel bzImage] [-r|--ramdisk file] [-B|--bootargs args]
               [-l comN,stdio|/dev/TTY] -m SIZE[K|M|G] -s SLOT[:FUNC],DEVICE[,OPTS] ...
               [--cpu_affinity LAPICID,...] [--lapic_pt] [--rtvm] [--virtio_poll NS]
               [--intr_monitor THRESHOLD,PERIOD,DELAY,DURATION]
               [--logger_setting console,level=N;kmsg,level=N;disk,level=N] VMNAME
devices: hostbridge, lpc, virtio-blk,PATH[,ro],
         virtio-console,[@]stdio|pty|file|tty:NAME[=PATH], virtio-net,tap=NAME[,mac_seed=S],
         uart,vuart_idx:N | uart,stdio|/dev/TTY, ivshmem,dm:/NAME,MIB | ivshmem,hv:/NAME,MIB,
         passthru,BUS/DEV/FUNC
";

/// Options of ACRN's acrn-dm this one rejects, and why.
const UNSUPPORTED: &[(&str, &str, bool)] = &[
    // (option, reason, takes a value)
    (
        "--ovmf",
        "no firmware is supported; boot Linux directly with --kernel/--ramdisk/--bootargs",
        true,
    ),
    (
        "--windows",
        "Windows guests need OVMF, which is not supported",
        false,
    ),
    (
        "--enable_trusty",
        "Trusty secure world is not implemented",
        false,
    ),
    (
        "-E",
        "ELF guests are not supported; use --kernel with a bzImage",
        true,
    ),
    (
        "--elf_file",
        "ELF guests are not supported; use --kernel with a bzImage",
        true,
    ),
    (
        "--cmd_monitor",
        "the command monitor socket is not implemented",
        true,
    ),
    (
        "--acpidev_pt",
        "ACPI device pass-through is not implemented",
        true,
    ),
    (
        "--mmiodev_pt",
        "MMIO device pass-through is not implemented",
        true,
    ),
    ("--vtpm2", "the virtual TPM is not implemented", true),
    ("--ssram", "software SRAM is not implemented", false),
    ("--iasl", "ACPI tables are built without iasl here", true),
    ("--virtio_msi", "virtio devices use INTx here", false),
    (
        "--debugexit",
        "the debugexit device is not implemented",
        false,
    ),
    ("--pm_notify_channel", "obsolete in ACRN", true),
    ("--pm_by_vuart", "obsolete in ACRN", true),
    (
        "--mac_seed",
        "obsolete in ACRN; give mac_seed= to virtio-net",
        true,
    ),
    ("--vsbl", "obsolete in ACRN", true),
    ("--part_info", "obsolete in ACRN", true),
    ("-A", "obsolete in ACRN", false),
    ("-Y", "obsolete in ACRN", false),
    ("-G", "obsolete in ACRN", true),
    ("-i", "obsolete in ACRN", true),
];

/// Device names ACRN knows that are not implemented here.
const UNSUPPORTED_DEVICES: &[(&str, &str)] = &[
    ("virtio-gpu", "no display support"),
    ("virtio-input", "no input device support"),
    ("virtio-rnd", "not implemented"),
    ("virtio-gpio", "not implemented"),
    ("virtio-i2c", "not implemented"),
    ("virtio-audio", "not implemented"),
    ("virtio-ipu", "not implemented"),
    ("virtio-rpmb", "not implemented"),
    ("virtio-heci", "not implemented"),
    ("virtio-hyper_dmabuf", "not implemented"),
    ("vhost-vsock", "not implemented"),
    ("ahci", "use virtio-blk"),
    ("ahci-hd", "use virtio-blk"),
    ("ahci-cd", "use virtio-blk"),
    ("xhci", "no USB support"),
    ("wdt-i6300esb", "no watchdog support"),
    ("amd_hostbridge", "use hostbridge"),
    ("igd-lpc", "no GVT-d support; use lpc"),
    ("dummy", "not implemented"),
    ("pci-gvt", "obsolete in ACRN"),
    ("virtio-hdcp", "obsolete in ACRN"),
    ("virtio-coreu", "obsolete in ACRN"),
    ("npk", "obsolete in ACRN"),
];

fn bad(option: &str, value: &str, reason: impl Into<String>) -> CliError {
    CliError::BadValue {
        option: option.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses the arguments after the program name.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Command, CliError> {
    let mut b = Builder::default();
    let mut i = 0;
    let mut positional = Vec::new();
    while i < args.len() {
        let arg = args[i].as_ref();
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            positional.push(arg.to_string());
            continue;
        }
        // `--opt=value` is getopt_long's other spelling.
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg, None),
        };
        let value = |i: &mut usize| -> Result<String, CliError> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args.get(*i).ok_or_else(|| CliError::MissingValue {
                option: name.to_string(),
            })?;
            *i += 1;
            Ok(v.as_ref().to_string())
        };
        match name {
            "-h" | "--help" => return Ok(Command::Help),
            "-v" | "--version" => return Ok(Command::Version),
            "-m" | "--memsize" => b.mem_size = Some(parse_mem_size(name, &value(&mut i)?)?),
            "-s" => {
                let v = value(&mut i)?;
                b.add_device(&v)?;
            }
            "-l" => {
                let v = value(&mut i)?;
                b.lpc_ports.push(parse_lpc(&v)?);
            }
            "-k" | "--kernel" => b.kernel = Some(PathBuf::from(value(&mut i)?)),
            "-r" | "--ramdisk" => b.ramdisk = Some(PathBuf::from(value(&mut i)?)),
            "-B" | "--bootargs" => b.bootargs = Some(value(&mut i)?),
            "--cpu_affinity" => {
                let v = value(&mut i)?;
                b.cpu_affinity = parse_cpu_affinity(name, &v)?;
            }
            "--lapic_pt" => b.lapic_pt = true,
            "--rtvm" => b.rtvm = true,
            "--virtio_poll" => {
                let v = value(&mut i)?;
                let ns: u64 = v
                    .parse()
                    .map_err(|_| bad(name, &v, "expected a period in nanoseconds"))?;
                // ACRN's acceptable range (`acrn_parse_virtio_poll_interval`).
                if !(1..=10_000_000_000).contains(&ns) {
                    return Err(bad(name, &v, "the period must be 1..=10000000000 ns"));
                }
                b.virtio_poll_ns = Some(ns);
            }
            "--intr_monitor" => {
                let v = value(&mut i)?;
                let nums: Vec<u32> = v
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad(name, &v, "expected THRESHOLD,PERIOD,DELAY,DURATION in decimal, e.g. 10000,10,1,100"))?;
                let [threshold_per_sec, period_secs, delay_ms, duration_ms] = nums[..] else {
                    return Err(bad(
                        name,
                        &v,
                        "expected four numbers: THRESHOLD,PERIOD,DELAY,DURATION",
                    ));
                };
                if period_secs == 0 {
                    return Err(bad(name, &v, "the probe period is at least 1 second"));
                }
                b.intr_monitor = Some(IntrMonitorSetting {
                    threshold_per_sec,
                    period_secs,
                    delay_ms,
                    duration_ms,
                });
            }
            "--logger_setting" => {
                let v = value(&mut i)?;
                b.logger = parse_logger(name, &v)?;
            }
            _ => {
                if let Some(&(opt, reason, _)) = UNSUPPORTED.iter().find(|(o, _, _)| *o == name) {
                    return Err(CliError::UnsupportedOption {
                        option: opt.to_string(),
                        reason,
                    });
                }
                return Err(CliError::UnknownOption(arg.to_string()));
            }
        }
    }
    let mut positional = positional.into_iter();
    let vm_name = positional.next().ok_or(CliError::MissingVmName)?;
    if let Some(extra) = positional.next() {
        return Err(CliError::Trailing(extra));
    }
    if vm_name.is_empty() || vm_name.len() > MAX_VM_NAME || vm_name.contains('\0') {
        return Err(bad(
            "VM name",
            &vm_name,
            format!("a VM name is 1..={MAX_VM_NAME} bytes (the hypervisor's name field is 16 with its NUL)"),
        ));
    }
    if b.lapic_pt && !b.rtvm {
        return Err(CliError::UnsupportedOption {
            option: "--lapic_pt".into(),
            reason: "LAPIC pass-through needs --rtvm (ACRN ignores --lapic_pt alone)",
        });
    }
    Ok(Command::Run(Box::new(b.finish(vm_name))))
}

#[derive(Default)]
struct Builder {
    mem_size: Option<u64>,
    devices: Vec<SlotDevice>,
    lpc_ports: Vec<LpcPort>,
    kernel: Option<PathBuf>,
    ramdisk: Option<PathBuf>,
    bootargs: Option<String>,
    cpu_affinity: Vec<u32>,
    lapic_pt: bool,
    rtvm: bool,
    virtio_poll_ns: Option<u64>,
    intr_monitor: Option<IntrMonitorSetting>,
    logger: LoggerSetting,
}

impl Builder {
    fn add_device(&mut self, arg: &str) -> Result<(), CliError> {
        let dev = parse_slot_device(arg)?;
        if self.devices.iter().any(|d| d.addr == dev.addr) {
            return Err(CliError::DuplicateSlot {
                arg: arg.to_string(),
                addr: dev.addr,
            });
        }
        self.devices.push(dev);
        Ok(())
    }

    fn finish(self, vm_name: String) -> DmConfig {
        DmConfig {
            mem_size: self.mem_size.unwrap_or(DEFAULT_MEM_SIZE),
            devices: self.devices,
            lpc_ports: self.lpc_ports,
            kernel: self.kernel,
            ramdisk: self.ramdisk,
            bootargs: self.bootargs,
            cpu_affinity: self.cpu_affinity,
            lapic_pt: self.lapic_pt,
            rtvm: self.rtvm,
            virtio_poll_ns: self.virtio_poll_ns,
            intr_monitor: self.intr_monitor,
            logger: self.logger,
            vm_name,
        }
    }
}

/// `-m`: a number with a K, M or G suffix (case-insensitive), at least [`MIN_MEM_SIZE`].
pub fn parse_mem_size(option: &str, v: &str) -> Result<u64, CliError> {
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, suffix) = v.split_at(split);
    if digits.is_empty() {
        let hint = if v == "NoneM" {
            " (ACRN's generator writes -m NoneM for a VM without <memory>: give the VM's size)"
        } else {
            ""
        };
        return Err(bad(
            option,
            v,
            format!("expected a size such as 512M or 2G{hint}"),
        ));
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "" => {
            return Err(bad(
                option,
                v,
                "a size needs a K, M or G suffix (as ACRN's acrn-dm requires), e.g. 512M",
            ))
        }
        _ => return Err(bad(option, v, "the suffix must be K, M or G")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| bad(option, v, "the number is too large"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .filter(|b| *b < (1u64 << 46))
        .ok_or_else(|| bad(option, v, "the size is too large"))?;
    if bytes < MIN_MEM_SIZE {
        return Err(bad(option, v, "a VM needs at least 128M"));
    }
    Ok(bytes)
}

fn parse_cpu_affinity(option: &str, v: &str) -> Result<Vec<u32>, CliError> {
    let mut ids = Vec::new();
    for part in v.split(',') {
        let id: u32 = part.trim().parse().map_err(|_| {
            bad(
                option,
                v,
                "expected comma-separated LAPIC IDs (decimal), e.g. 2,4",
            )
        })?;
        if ids.contains(&id) {
            return Err(bad(option, v, format!("LAPIC ID {id} is listed twice")));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn parse_logger(option: &str, v: &str) -> Result<LoggerSetting, CliError> {
    let mut s = LoggerSetting::default();
    for part in v.split(';').filter(|p| !p.is_empty()) {
        let (logger, level) = part
            .split_once(",level=")
            .ok_or_else(|| bad(option, v, "each entry is LOGGER,level=N, separated by ';'"))?;
        let level: u8 = level
            .parse()
            .ok()
            .filter(|l| (1..=7).contains(l))
            .ok_or_else(|| bad(option, v, "a log level is 1..=7"))?;
        match logger {
            "console" => s.console = Some(level),
            "kmsg" => s.kmsg = Some(level),
            "disk" => s.disk = Some(level),
            _ => {
                return Err(bad(
                    option,
                    v,
                    format!("unknown logger {logger:?}: use console, kmsg or disk"),
                ))
            }
        }
    }
    Ok(s)
}

fn parse_lpc(v: &str) -> Result<LpcPort, CliError> {
    let (dev, backend) = v
        .split_once(',')
        .ok_or_else(|| bad("-l", v, "expected comN,BACKEND, e.g. com1,stdio"))?;
    let com = match dev {
        "com1" => 1,
        "com2" => 2,
        "com3" => 3,
        "com4" => 4,
        _ => {
            return Err(bad(
                "-l",
                v,
                format!("unknown LPC device {dev:?}: com1..com4 are supported"),
            ))
        }
    };
    let backend = parse_backend("-l", v, backend)?;
    Ok(LpcPort { com, backend })
}

fn parse_backend(option: &str, whole: &str, b: &str) -> Result<CharBackend, CliError> {
    Ok(match b {
        "stdio" => CharBackend::Stdio,
        _ if b.starts_with("/dev/") => CharBackend::Tty(PathBuf::from(b)),
        _ => {
            return Err(bad(
                option,
                whole,
                format!("unknown backend {b:?}: stdio or a /dev tty path"),
            ))
        }
    })
}

/// `SLOT`, `SLOT:FUNC` or `BUS:SLOT:FUNC` (decimal; `:`, `/` or `.` separate, as ACRN accepts).
fn parse_guest_addr(arg: &str, s: &str) -> Result<PciAddr, CliError> {
    let parts: Vec<&str> = s.split([':', '/', '.']).collect();
    let nums: Option<Vec<u8>> = parts.iter().map(|p| p.parse().ok()).collect();
    let err = || {
        bad(
            "-s",
            arg,
            "the slot is SLOT, SLOT:FUNC or BUS:SLOT:FUNC in decimal, slot < 32, function < 8",
        )
    };
    let nums = nums.ok_or_else(err)?;
    let (bus, dev, func) = match nums[..] {
        [d] => (0, d, 0),
        [d, f] => (0, d, f),
        [b, d, f] => (b, d, f),
        _ => return Err(err()),
    };
    if dev >= 32 || func >= 8 {
        return Err(err());
    }
    Ok(PciAddr { bus, dev, func })
}

/// A host BDF for `passthru`: hex `BUS/DEV/FUNC` (any of `/ : .`), optionally with the
/// `0000:` domain ACRN's helper strips.
fn parse_host_bdf(arg: &str, s: &str) -> Result<PciAddr, CliError> {
    let err = || {
        bad(
            "-s",
            arg,
            format!("{s:?} is not a host PCI address: expected hex BUS/DEV/FUNC, e.g. 00/02/0"),
        )
    };
    let mut parts: Vec<&str> = s.split(['/', ':', '.']).collect();
    if parts.len() == 4 && parts[0].len() == 4 {
        if u16::from_str_radix(parts[0], 16) != Ok(0) {
            return Err(bad("-s", arg, "only PCI domain 0 exists on ACRN"));
        }
        parts.remove(0);
    }
    if parts.len() != 3 {
        return Err(err());
    }
    let hex = |p: &str| u8::from_str_radix(p, 16).map_err(|_| err());
    let addr = PciAddr {
        bus: hex(parts[0])?,
        dev: hex(parts[1])?,
        func: hex(parts[2])?,
    };
    if addr.dev >= 32 || addr.func >= 8 {
        return Err(err());
    }
    Ok(addr)
}

/// One `-s` argument.
pub fn parse_slot_device(arg: &str) -> Result<SlotDevice, CliError> {
    let mut fields = arg.splitn(3, ',');
    let slot = fields.next().unwrap_or_default();
    let kind = fields
        .next()
        .ok_or_else(|| bad("-s", arg, "expected SLOT,DEVICE[,OPTIONS]"))?;
    let opts = fields.next();
    let addr = parse_guest_addr(arg, slot)?;
    let need_opts = |what: &str| {
        opts.filter(|o| !o.is_empty())
            .ok_or_else(|| bad("-s", arg, format!("{kind} needs {what}")))
    };
    let no_opts = || match opts {
        Some(o) if !o.is_empty() => Err(bad("-s", arg, format!("{kind} takes no options"))),
        _ => Ok(()),
    };
    let device = match kind {
        "hostbridge" => {
            no_opts()?;
            Device::Hostbridge
        }
        "lpc" => {
            no_opts()?;
            Device::Lpc
        }
        "virtio-blk" => {
            let o = need_opts("an image path")?;
            let mut parts = o.split(',');
            let path = parts.next().unwrap_or_default();
            let mut read_only = false;
            for opt in parts {
                match opt {
                    "ro" => read_only = true,
                    // Cache modes change only how ACRN's block layer flushes.
                    "writeback" | "writethru" | "nocache" => {
                        return Err(bad(
                            "-s",
                            arg,
                            format!("virtio-blk option {opt:?} is not supported (only ro)"),
                        ))
                    }
                    _ => {
                        return Err(bad(
                            "-s",
                            arg,
                            format!("unknown virtio-blk option {opt:?} (only ro is supported)"),
                        ))
                    }
                }
            }
            Device::VirtioBlk {
                path: PathBuf::from(path),
                read_only,
            }
        }
        "virtio-console" => {
            let o = need_opts("ports, e.g. @stdio:stdio_port")?;
            Device::VirtioConsole(
                o.split(',')
                    .map(|p| parse_console_port(arg, p))
                    .collect::<Result<_, _>>()?,
            )
        }
        "virtio-net" => {
            let o = need_opts("tap=NAME")?;
            let mut tap = None;
            let mut mac_seed = None;
            for opt in o.split(',') {
                if let Some(t) = opt.strip_prefix("tap=").or(opt.strip_prefix("tap_")) {
                    tap = Some(t.to_string());
                } else if let Some(seed) = opt.strip_prefix("mac_seed=") {
                    mac_seed = Some(seed.to_string());
                } else {
                    return Err(bad(
                        "-s",
                        arg,
                        format!("unknown virtio-net option {opt:?} (tap=NAME, mac_seed=SEED)"),
                    ));
                }
            }
            let tap = tap.ok_or_else(|| bad("-s", arg, "virtio-net needs tap=NAME"))?;
            if tap.is_empty() || tap.len() >= libc::IFNAMSIZ {
                return Err(bad("-s", arg, "a tap name is 1..=15 bytes"));
            }
            Device::VirtioNet { tap, mac_seed }
        }
        "uart" => {
            let o = need_opts("vuart_idx:N or a backend")?;
            if let Some(idx) = o.strip_prefix("vuart_idx:") {
                let idx = idx
                    .parse()
                    .map_err(|_| bad("-s", arg, "vuart_idx takes a decimal number"))?;
                Device::Uart(UartBackend::HvVuart(idx))
            } else {
                Device::Uart(UartBackend::Dm(parse_backend("-s", arg, o)?))
            }
        }
        "ivshmem" => parse_ivshmem(arg, need_opts("dm:/NAME,SIZE or hv:/NAME,SIZE")?)?,
        "passthru" => {
            let o = need_opts("a host BUS/DEV/FUNC")?;
            let mut parts = o.split(',');
            let host = parse_host_bdf(arg, parts.next().unwrap_or_default())?;
            Device::Passthru {
                host,
                opts: parts.map(str::to_string).collect(),
            }
        }
        _ => {
            if let Some(&(device, reason)) = UNSUPPORTED_DEVICES.iter().find(|(d, _)| *d == kind) {
                return Err(CliError::UnsupportedDevice {
                    arg: arg.to_string(),
                    device: device.to_string(),
                    reason,
                });
            }
            return Err(bad(
                "-s",
                arg,
                format!("unknown device {kind:?}; run `acrn-dm --help` for the supported ones"),
            ));
        }
    };
    Ok(SlotDevice { addr, device })
}

fn parse_console_port(arg: &str, p: &str) -> Result<ConsolePort, CliError> {
    let (is_console, p) = match p.strip_prefix('@') {
        Some(rest) => (true, rest),
        None => (false, p),
    };
    let (kind, rest) = p.split_once(':').ok_or_else(|| {
        bad(
            "-s",
            arg,
            format!("console port {p:?}: expected [@]KIND:NAME[=PATH]"),
        )
    })?;
    let (name, path) = match rest.split_once('=') {
        Some((n, path)) => (n, Some(PathBuf::from(path))),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(bad("-s", arg, format!("console port {p:?} has no name")));
    }
    let backend = match kind {
        "stdio" => CharBackend::Stdio,
        "pty" => CharBackend::Pty(path),
        "file" => {
            CharBackend::File(path.ok_or_else(|| bad("-s", arg, "a file port needs NAME=PATH"))?)
        }
        "tty" => {
            CharBackend::Tty(path.ok_or_else(|| bad("-s", arg, "a tty port needs NAME=PATH"))?)
        }
        _ => {
            return Err(bad(
                "-s",
                arg,
                format!("console backend {kind:?} is not supported (stdio, pty, file, tty)"),
            ))
        }
    };
    Ok(ConsolePort {
        is_console,
        name: name.to_string(),
        backend,
    })
}

fn parse_ivshmem(arg: &str, o: &str) -> Result<Device, CliError> {
    let mut parts = o.split(',');
    let full = parts.next().unwrap_or_default();
    let (land, name) = if let Some(n) = full.strip_prefix("hv:/") {
        (IvshmemLand::Hypervisor, n)
    } else if let Some(n) = full.strip_prefix("dm:/") {
        (IvshmemLand::DeviceModel, n)
    } else {
        return Err(bad("-s", arg, "an ivshmem region is dm:/NAME or hv:/NAME"));
    };
    if name.is_empty() {
        return Err(bad("-s", arg, "the ivshmem region needs a name"));
    }
    let size_mib: u32 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("-s", arg, "ivshmem needs a size in MiB after the name"))?;
    // ACRN: a power of two, at least 2 MiB and below 1 GiB.
    if !size_mib.is_power_of_two() || !(2..1024).contains(&size_mib) {
        return Err(bad(
            "-s",
            arg,
            "the ivshmem size (MiB) must be a power of two from 2 to 512",
        ));
    }
    let region_id = match parts.next() {
        None => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| bad("-s", arg, "the third ivshmem field is a decimal number"))?,
        ),
    };
    if let Some(extra) = parts.next() {
        return Err(bad(
            "-s",
            arg,
            format!("unexpected ivshmem field {extra:?}"),
        ));
    }
    Ok(Device::Ivshmem {
        land,
        name: name.to_string(),
        size_mib,
        region_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &str) -> Result<DmConfig, CliError> {
        let args: Vec<&str> = args.split_whitespace().collect();
        match parse(&args)? {
            Command::Run(cfg) => Ok(*cfg),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_direct_boot_line() {
        let cfg = run("-m 1G -s 0:0,hostbridge -s 1:0,lpc -l com1,stdio \
             -s 3,virtio-blk,/tmp/disk.img,ro -s 4,virtio-net,tap=tap0,mac_seed=x \
             -s 5,virtio-console,@stdio:stdio_port,pty:p2=/tmp/p -s 6,ivshmem,hv:/shm_region_0,2,0 \
             -s 7,uart,vuart_idx:1 -s 8,passthru,00/1f/3 -s 9,ivshmem,dm:/mine,4 \
             --kernel /b/bzImage --ramdisk /b/initrd --bootargs console=ttyS0 \
             --cpu_affinity 2,4 --rtvm --lapic_pt --virtio_poll 1000000 \
             --logger_setting console,level=4;kmsg,level=3;disk,level=5 vm1")
        .unwrap();
        assert_eq!(cfg.mem_size, 1 << 30);
        assert_eq!(cfg.devices.len(), 9);
        assert_eq!(cfg.devices[0].device, Device::Hostbridge);
        assert_eq!(
            cfg.devices[1].addr,
            PciAddr {
                bus: 0,
                dev: 1,
                func: 0
            }
        );
        assert_eq!(
            cfg.devices[2].device,
            Device::VirtioBlk {
                path: "/tmp/disk.img".into(),
                read_only: true
            }
        );
        assert_eq!(
            cfg.devices[3].device,
            Device::VirtioNet {
                tap: "tap0".into(),
                mac_seed: Some("x".into())
            }
        );
        assert_eq!(
            cfg.devices[4].device,
            Device::VirtioConsole(vec![
                ConsolePort {
                    is_console: true,
                    name: "stdio_port".into(),
                    backend: CharBackend::Stdio
                },
                ConsolePort {
                    is_console: false,
                    name: "p2".into(),
                    backend: CharBackend::Pty(Some("/tmp/p".into()))
                },
            ])
        );
        assert_eq!(
            cfg.devices[5].device,
            Device::Ivshmem {
                land: IvshmemLand::Hypervisor,
                name: "shm_region_0".into(),
                size_mib: 2,
                region_id: Some(0)
            }
        );
        assert_eq!(cfg.devices[6].device, Device::Uart(UartBackend::HvVuart(1)));
        assert_eq!(
            cfg.devices[7].device,
            Device::Passthru {
                host: PciAddr {
                    bus: 0,
                    dev: 0x1f,
                    func: 3
                },
                opts: vec![]
            }
        );
        assert_eq!(
            cfg.lpc_ports,
            vec![LpcPort {
                com: 1,
                backend: CharBackend::Stdio
            }]
        );
        assert_eq!(
            cfg.kernel.as_deref(),
            Some(std::path::Path::new("/b/bzImage"))
        );
        assert_eq!(cfg.bootargs.as_deref(), Some("console=ttyS0"));
        assert_eq!(cfg.cpu_affinity, vec![2, 4]);
        assert!(cfg.rtvm && cfg.lapic_pt);
        assert_eq!(cfg.virtio_poll_ns, Some(1_000_000));
        assert_eq!(
            cfg.logger,
            LoggerSetting {
                console: Some(4),
                kmsg: Some(3),
                disk: Some(5)
            }
        );
        assert_eq!(cfg.vm_name, "vm1");
        let cfg = run("--intr_monitor 10000,10,1,100 vm").unwrap();
        assert_eq!(
            cfg.intr_monitor,
            Some(IntrMonitorSetting {
                threshold_per_sec: 10000,
                period_secs: 10,
                delay_ms: 1,
                duration_ms: 100
            })
        );
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem_size("-m", "512M").unwrap(), 512 << 20);
        assert_eq!(parse_mem_size("-m", "2g").unwrap(), 2 << 30);
        assert_eq!(parse_mem_size("-m", "262144k").unwrap(), 256 << 20);
        for (v, msg) in [
            ("NoneM", "<memory>"),
            ("512", "suffix"),
            ("64M", "at least 128M"),
            ("5T", "K, M or G"),
            ("99999999999999999999G", "too large"),
            ("", "expected a size"),
        ] {
            let e = parse_mem_size("-m", v).unwrap_err().to_string();
            assert!(e.contains(msg) && e.contains("-m"), "{v}: {e}");
        }
        assert_eq!(run("vm").unwrap().mem_size, DEFAULT_MEM_SIZE);
    }

    #[test]
    fn long_options_take_inline_values() {
        let cfg = run("--kernel=/k --cpu_affinity=1 vm").unwrap();
        assert_eq!(cfg.kernel.as_deref(), Some(std::path::Path::new("/k")));
        assert_eq!(cfg.cpu_affinity, vec![1]);
    }

    #[test]
    fn unsupported_and_unknown_options_are_named() {
        let e = run("--ovmf /usr/share/acrn/bios/OVMF.fd vm").unwrap_err();
        assert!(matches!(&e, CliError::UnsupportedOption { option, .. } if option == "--ovmf"));
        assert!(
            e.to_string().contains("--ovmf") && e.to_string().contains("--kernel"),
            "{e}"
        );
        let e = run("--ovmf=/x vm").unwrap_err();
        assert!(matches!(&e, CliError::UnsupportedOption { option, .. } if option == "--ovmf"));
        let e = run("-s 3,virtio-gpu,geometry=fullscreen vm").unwrap_err();
        assert!(
            matches!(&e, CliError::UnsupportedDevice { device, .. } if device == "virtio-gpu"),
            "{e}"
        );
        assert!(e.to_string().contains("virtio-gpu"));
        let e = run("--frobnicate vm").unwrap_err();
        assert_eq!(e, CliError::UnknownOption("--frobnicate".into()));
        let e = run("-s 3,frob vm").unwrap_err().to_string();
        assert!(e.contains("unknown device \"frob\""), "{e}");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (line, needle) in [
            ("-m", "needs a value"),
            ("-s 40,lpc vm", "slot < 32"),
            ("-s 3:9,lpc vm", "function < 8"),
            ("-s x,lpc vm", "decimal"),
            ("-s 3 vm", "SLOT,DEVICE"),
            ("-s 0:0,hostbridge,extra vm", "takes no options"),
            ("-s 3,virtio-blk vm", "needs an image path"),
            ("-s 3,virtio-blk,/x,turbo vm", "unknown virtio-blk option"),
            ("-s 4,virtio-net,mac_seed=1 vm", "needs tap=NAME"),
            ("-s 4,virtio-net,tap=averyveryverylongname vm", "1..=15"),
            ("-s 5,virtio-console,stdio vm", "[@]KIND:NAME"),
            ("-s 5,virtio-console,@socket:x=/s vm", "socket"),
            ("-s 6,ivshmem,shm,2 vm", "dm:/NAME or hv:/NAME"),
            ("-s 6,ivshmem,hv:/shm,3 vm", "power of two"),
            ("-s 6,ivshmem,hv:/shm vm", "size in MiB"),
            ("-s 7,uart,vuart_idx:x vm", "decimal"),
            ("-s 8,passthru,0/2 vm", "BUS/DEV/FUNC"),
            ("-s 8,passthru,0001:00:02.0 vm", "domain 0"),
            ("-l com9,stdio vm", "com1..com4"),
            ("-l com1,socket vm", "unknown backend"),
            ("--cpu_affinity 1,x vm", "LAPIC IDs"),
            ("--cpu_affinity 1,1 vm", "twice"),
            ("--virtio_poll 0 vm", "1..=10000000000"),
            ("--logger_setting console=4 vm", "LOGGER,level=N"),
            ("--logger_setting net,level=4 vm", "unknown logger"),
            ("--logger_setting console,level=9 vm", "1..=7"),
            ("-s 1:0,lpc -s 1,hostbridge vm", "already used"),
            ("-m 512M", "VM name"),
            ("vm extra", "after the VM name"),
            ("a_name_that_is_too_long", "1..=15"),
            ("--lapic_pt vm", "needs --rtvm"),
            ("--intr_monitor 1,2,3 vm", "four numbers"),
            ("--intr_monitor 1,x,3,4 vm", "THRESHOLD,PERIOD"),
            ("--intr_monitor 1,0,3,4 vm", "at least 1 second"),
        ] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let e = parse(&args).unwrap_err().to_string();
            assert!(e.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn stdio_users() {
        assert!(!run("vm").unwrap().uses_stdio());
        assert!(run("-l com1,stdio vm").unwrap().uses_stdio());
        assert!(run("-s 3,virtio-console,@stdio:p vm").unwrap().uses_stdio());
        assert!(!run("-s 3,virtio-console,@pty:p vm").unwrap().uses_stdio());
    }

    #[test]
    fn help_and_version() {
        assert_eq!(parse(&["-h"]).unwrap(), Command::Help);
        assert_eq!(parse(&["--version"]).unwrap(), Command::Version);
    }
}
