//! The emulated platform: PCI bus 0 behind the HSM's 0xCF8/0xCFC decoding, COM1 on the LPC
//! bridge, the RTC and the PIT, ACPI PM1a and the reset registers; built from the command line.

pub mod ivshmem;
pub mod passthru;
pub mod pci;
pub mod rtc;
pub mod uart;
pub mod virtio;
pub mod virtio_blk;
pub mod virtio_console;
pub mod virtio_net;

use crate::acpi::{IntxRoute, PCI_MEM32, PM1A_CNT_ADDR, PM1A_EVT_ADDR, RESET_PORT, S5_SLP_TYP};
use crate::cli::{CharBackend, Device, DmConfig, IvshmemLand, PciAddr, UartBackend};
use crate::ioreq::{Access, IoHandler, VmExit};
use crate::memory::GuestMemory;
use acrn_abi::device::{AcrnPcidev, AcrnVdev};
use acrn_abi::irq::AcrnPtdevIrq;
use acrn_abi::irq::GsiOp;
use pci::{BarKind, PciFunction};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uart::{Uart16550, COM_PORTS};

/// First port of PCI I/O BARs (ACRN's `PCI_EMUL_IOBASE`).
pub const PCI_IO_BASE: u16 = 0x2000;
/// First GSI given to PCI INTx (the vIOAPIC's pins above the 16 ISA ones).
pub const PCI_GSI_BASE: u32 = 16;
/// The keyboard controller's command port (0xFE there resets the machine).
pub const KBC_CMD_PORT: u16 = 0x64;

/// ISA IRQ 0's GSI (the MADT's interrupt source override).
const PIT_GSI: u32 = 2;
/// How often an idle PIT is looked at again (a guest may program it at any time).
pub const PIT_IDLE_CHECK: Duration = Duration::from_millis(10);
/// The shortest PIT interrupt period acrn-dm keeps up with.
pub const PIT_MIN_PERIOD: Duration = Duration::from_micros(500);

const PM1_SCI_EN: u16 = 1 << 0;
const PM1_SLP_EN: u16 = 1 << 13;
const CF9_RST_CPU: u8 = 1 << 2;

/// Why the platform could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Only bus 0 exists.
    #[error("-s {0}: only PCI bus 0 is emulated")]
    NotBusZero(PciAddr),
    /// A `-l` port that is not implemented.
    #[error("-l com{0}: com{0} is given twice")]
    LpcPort(u8),
    /// `-l` without an LPC bridge.
    #[error("-l com ports need the LPC bridge: add -s 1:0,lpc")]
    NoLpc,
    /// The disk image cannot be opened.
    #[error("virtio-blk image {path}: {err}")]
    Disk {
        /// Path.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// virtio-console with other than one port.
    #[error("-s {0},virtio-console: exactly one port is supported (no multiport)")]
    ConsolePorts(PciAddr),
    /// A console backend cannot be opened.
    #[error("virtio-console port {port}: {path}: {err}")]
    Backend {
        /// Port name.
        port: String,
        /// Path.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// The tap cannot be opened.
    #[error("virtio-net tap {tap}: {err} (is the tap interface configured, and acrn-dm root?)")]
    Tap {
        /// Interface name.
        tap: String,
        /// Why.
        err: std::io::Error,
    },
    /// A host function cannot be read.
    #[error(transparent)]
    Passthru(#[from] passthru::PassthruError),
    /// A pass-through option ACRN knows and this acrn-dm does not implement.
    #[error("-s {addr},passthru: option {opt:?} is not supported")]
    PassthruOption {
        /// Guest slot.
        addr: PciAddr,
        /// The option.
        opt: String,
    },
    /// A host BAR that cannot be given a virtual address.
    #[error("host PCI {addr} BAR {bar}: size {size:#x} cannot be placed (not a power of two, or too large for the 32-bit window)")]
    PassthruBar {
        /// Host address.
        addr: PciAddr,
        /// BAR index.
        bar: usize,
        /// Its size.
        size: u64,
    },
    /// The 32-bit PCI window is full.
    #[error("the devices' memory BARs do not fit the 32-bit PCI window")]
    OutOfMmio,
    /// A dm-land IVSHMEM region cannot be set up.
    #[error("ivshmem dm:/{name}: {err}")]
    Shm {
        /// Region name.
        name: String,
        /// Why.
        err: std::io::Error,
    },
    /// Too many INTx devices for the vIOAPIC.
    #[error("too many devices with interrupts")]
    TooManyIrqs,
}

struct Slot {
    func: Box<dyn PciFunction>,
    gsi: Option<u32>,
}

/// Makes a writer to acrn-dm's standard output (one per device on stdio).
pub type Stdio = fn() -> Box<dyn Write + Send>;

/// Standard input's descriptor.
pub const STDIN: RawFd = 0;

/// Where bytes read from a host descriptor go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSink {
    /// A legacy COM port (0 = COM1).
    Com(u8),
    /// The PCI function at (device, function).
    Pci(u8, u8),
}

/// A host descriptor with guest-bound input, and the devices that take it (stdin goes to every
/// device on stdio: the guest's console may be either).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSource {
    /// The descriptor to poll and read.
    pub fd: RawFd,
    /// The devices.
    pub sinks: Vec<InputSink>,
}

fn alloc_gsi(next: &mut u32) -> Result<u32, SetupError> {
    // The vIOAPIC has 48 pins (ACRN's VIOAPIC_RTE_NUM).
    if *next >= 48 {
        return Err(SetupError::TooManyIrqs);
    }
    *next += 1;
    Ok(*next - 1)
}

/// The machine acrn-dm emulates for one VM.
pub struct Platform {
    inputs: Vec<InputSource>,
    /// Descriptors the platform keeps open (ptys, ttys) for its devices.
    owned_fds: Vec<OwnedFd>,
    pci: BTreeMap<(u8, u8), Slot>,
    /// Legacy COM ports: (base port, ISA IRQ, UART).
    coms: Vec<(u16, u32, Uart16550)>,
    rtc: rtc::Rtc,
    pit: acrn_i8254::Pit,
    /// The PIT's time base.
    clock: Instant,
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    cf9: u8,
    exit: Option<VmExit>,
    irqs: Vec<(u32, GsiOp)>,
    hv_vdevs: Vec<HvVdev>,
    shm: Vec<(u64, ivshmem::ShmRegion)>,
    passthrough: Vec<Passthrough>,
    pt_routes: Vec<IntxRoute>,
}

/// A host function to hand to the VM.
#[derive(Debug, Clone)]
pub struct Passthrough {
    /// Guest slot.
    pub addr: PciAddr,
    /// ASSIGN_PCIDEV.
    pub dev: AcrnPcidev,
    /// SET_PTDEV_INTR, when the function has an INTx pin.
    pub irq: Option<AcrnPtdevIrq>,
}

/// A device the hypervisor emulates for the VM, created with HC_ADD_VDEV.
#[derive(Debug, Clone)]
pub struct HvVdev {
    /// Guest slot.
    pub addr: PciAddr,
    /// What it is, for messages.
    pub what: String,
    /// The request.
    pub vdev: AcrnVdev,
}

fn alloc_mmio(next: &mut u32, size: u32) -> Result<u32, SetupError> {
    let at = next.next_multiple_of(size);
    let end = at.checked_add(size).filter(|e| *e <= PCI_MEM32.1);
    let end = end.ok_or(SetupError::OutOfMmio)?;
    *next = end;
    Ok(at)
}

impl Platform {
    /// Builds the devices of `cfg`; devices on stdio write to what `stdio` returns; host PCI
    /// functions are read under `pci_sysfs` (normally [`passthru::PCI_SYSFS`]).
    pub fn build(
        cfg: &DmConfig,
        mem: Arc<GuestMemory>,
        stdio: Stdio,
        pci_sysfs: &std::path::Path,
    ) -> Result<Self, SetupError> {
        let mut p = Self {
            inputs: Vec::new(),
            owned_fds: Vec::new(),
            pci: BTreeMap::new(),
            coms: Vec::new(),
            rtc: rtc::Rtc::default(),
            pit: acrn_i8254::Pit::default(),
            clock: Instant::now(),
            pm1_sts: 0,
            pm1_en: 0,
            // Always in ACPI mode (the FADT has no SMI command port).
            pm1_cnt: PM1_SCI_EN,
            cf9: 0,
            exit: None,
            irqs: Vec::new(),
            hv_vdevs: Vec::new(),
            shm: Vec::new(),
            passthrough: Vec::new(),
            pt_routes: Vec::new(),
        };
        let mut next_mmio = PCI_MEM32.0;
        let mut next_io = PCI_IO_BASE;
        let mut next_gsi = PCI_GSI_BASE;
        for sd in &cfg.devices {
            if sd.addr.bus != 0 {
                return Err(SetupError::NotBusZero(sd.addr));
            }
            let key = (sd.addr.dev, sd.addr.func);
            let (func, gsi): (Box<dyn PciFunction>, Option<u32>) = match &sd.device {
                Device::Hostbridge => (Box::new(pci::hostbridge()), None),
                Device::Lpc => (Box::new(pci::lpc()), None),
                Device::VirtioBlk { path, read_only } => {
                    let disk = std::fs::OpenOptions::new()
                        .read(true)
                        .write(!read_only)
                        .open(path)
                        .map_err(|err| SetupError::Disk {
                            path: path.clone(),
                            err,
                        })?;
                    let blk = virtio_blk::VirtioBlk::new(disk, *read_only).map_err(|err| {
                        SetupError::Disk {
                            path: path.clone(),
                            err,
                        }
                    })?;
                    let gsi = alloc_gsi(&mut next_gsi)?;
                    let dev = virtio::VirtioPci::new(blk, mem.clone(), next_io, gsi as u8);
                    next_io += virtio::BAR_SIZE as u16;
                    (Box::new(dev), Some(gsi))
                }
                Device::VirtioConsole(ports) => {
                    let [port] = &ports[..] else {
                        return Err(SetupError::ConsolePorts(sd.addr));
                    };
                    let (out, input) = p.open_backend(&port.name, &port.backend, stdio)?;
                    if let Some(fd) = input {
                        p.add_input(fd, InputSink::Pci(key.0, key.1));
                    }
                    let gsi = alloc_gsi(&mut next_gsi)?;
                    let con = virtio_console::VirtioConsole::new(out);
                    let dev = virtio::VirtioPci::new(con, mem.clone(), next_io, gsi as u8);
                    next_io += virtio::BAR_SIZE as u16;
                    (Box::new(dev), Some(gsi))
                }
                Device::VirtioNet { tap, mac_seed } => {
                    let file = virtio_net::open_tap(tap).map_err(|err| SetupError::Tap {
                        tap: tap.clone(),
                        err,
                    })?;
                    let writer = file.try_clone().map_err(|err| SetupError::Tap {
                        tap: tap.clone(),
                        err,
                    })?;
                    p.add_input(file.as_raw_fd(), InputSink::Pci(key.0, key.1));
                    p.owned_fds.push(file.into());
                    let seed = match mac_seed {
                        Some(seed) => format!("{seed}-{}", cfg.vm_name),
                        None => format!("{}-{}", sd.addr, cfg.vm_name),
                    };
                    let net = virtio_net::VirtioNet::new(
                        Box::new(writer),
                        virtio_net::mac_from_seed(&seed),
                    );
                    let gsi = alloc_gsi(&mut next_gsi)?;
                    let dev = virtio::VirtioPci::new(net, mem.clone(), next_io, gsi as u8);
                    next_io += virtio::BAR_SIZE as u16;
                    (Box::new(dev), Some(gsi))
                }
                Device::Uart(UartBackend::HvVuart(idx)) => {
                    let bars = [
                        alloc_mmio(&mut next_mmio, 0x100)?,
                        alloc_mmio(&mut next_mmio, 0x1000)?,
                    ];
                    let slot = ivshmem::bdf(sd.addr.bus, sd.addr.dev, sd.addr.func);
                    p.hv_vdevs.push(HvVdev {
                        addr: sd.addr,
                        what: format!("uart vuart_idx:{idx}"),
                        vdev: ivshmem::vuart_vdev(slot, bars, *idx),
                    });
                    continue;
                }
                Device::Ivshmem {
                    land,
                    name,
                    size_mib,
                    ..
                } => {
                    let size = size_mib << 20;
                    let bars = [
                        alloc_mmio(&mut next_mmio, ivshmem::REG_SIZE)?,
                        alloc_mmio(&mut next_mmio, ivshmem::MSIX_SIZE)?,
                        alloc_mmio(&mut next_mmio, size)?,
                    ];
                    match land {
                        IvshmemLand::Hypervisor => {
                            let slot = ivshmem::bdf(sd.addr.bus, sd.addr.dev, sd.addr.func);
                            let full = format!("hv:/{name}");
                            p.hv_vdevs.push(HvVdev {
                                addr: sd.addr,
                                what: format!("ivshmem {full}"),
                                vdev: ivshmem::hv_vdev(slot, bars, size, &full),
                            });
                            continue;
                        }
                        IvshmemLand::DeviceModel => {
                            let region = ivshmem::ShmRegion::open(name, size).map_err(|err| {
                                SetupError::Shm {
                                    name: name.clone(),
                                    err,
                                }
                            })?;
                            p.shm.push((u64::from(bars[2]), region));
                            (Box::new(ivshmem::DmIvshmem::new(bars, size)), None)
                        }
                    }
                }
                Device::Passthru { host, opts } => {
                    let unsupported = |opt: &String| SetupError::PassthruOption {
                        addr: sd.addr,
                        opt: opt.clone(),
                    };
                    if let Some(opt) = opts.iter().find(|o| *o != "enable_ptm") {
                        return Err(unsupported(opt));
                    }
                    let hd = passthru::read_host_device(pci_sysfs, *host)?;
                    // ACRN's launch scripts ask for PTM for every Ethernet controller; PTM
                    // needs a virtual root port only for a function that has the capability.
                    if let Some(opt) = opts.first() {
                        if hd.ptm {
                            return Err(unsupported(opt));
                        }
                        eprintln!(
                            "acrn-dm: -s {},passthru: host PCI {host} has no PTM capability; \
                             enable_ptm has nothing to enable",
                            sd.addr
                        );
                    }
                    let mut vbars = [0u32; 6];
                    for (i, bar) in hd.bars.iter().enumerate() {
                        let Some(bar) = bar else { continue };
                        let bad = || SetupError::PassthruBar {
                            addr: *host,
                            bar: i,
                            size: bar.size,
                        };
                        match bar.kind {
                            passthru::HostBarKind::Io => {
                                let size = u16::try_from(bar.size.max(4))
                                    .ok()
                                    .filter(|s| s.is_power_of_two())
                                    .ok_or_else(bad)?;
                                let at = next_io.next_multiple_of(size);
                                next_io = at.checked_add(size).ok_or_else(bad)?;
                                vbars[i] = u32::from(at) | 1;
                            }
                            passthru::HostBarKind::Mem32 | passthru::HostBarKind::Mem64 => {
                                let size = u32::try_from(bar.size.max(4096))
                                    .ok()
                                    .filter(|s| s.is_power_of_two())
                                    .ok_or_else(bad)?;
                                let at = alloc_mmio(&mut next_mmio, size)?;
                                let mem64 = bar.kind == passthru::HostBarKind::Mem64;
                                vbars[i] = at
                                    | if mem64 { 0x4 } else { 0 }
                                    | if bar.prefetch { 0x8 } else { 0 };
                            }
                        }
                    }
                    let gsi = if hd.intr_pin != 0 {
                        Some(alloc_gsi(&mut next_gsi)?)
                    } else {
                        None
                    };
                    if let Some(gsi) = gsi {
                        p.pt_routes.push(IntxRoute {
                            slot: sd.addr.dev,
                            pin: hd.intr_pin.saturating_sub(1) & 3,
                            gsi,
                        });
                    }
                    p.passthrough.push(Passthrough {
                        addr: sd.addr,
                        dev: passthru::assignment(sd.addr, &hd, vbars, gsi),
                        irq: gsi.map(|g| passthru::intx_remap(sd.addr, &hd, g)),
                    });
                    continue;
                }
                Device::Uart(UartBackend::Dm(backend)) => {
                    let (out, input) = p.open_backend("uart", backend, stdio)?;
                    if let Some(fd) = input {
                        p.add_input(fd, InputSink::Pci(key.0, key.1));
                    }
                    let gsi = alloc_gsi(&mut next_gsi)?;
                    let at = next_io.next_multiple_of(uart::PCI_UART_BAR as u16);
                    next_io = at + uart::PCI_UART_BAR as u16;
                    (Box::new(uart::PciUart::new(out, at, gsi as u8)), Some(gsi))
                }
            };
            p.pci.insert(key, Slot { func, gsi });
        }
        let has_lpc = cfg.devices.iter().any(|d| d.device == Device::Lpc);
        for port in &cfg.lpc_ports {
            if !has_lpc {
                return Err(SetupError::NoLpc);
            }
            let (base, irq) = COM_PORTS[usize::from(port.com - 1)];
            if p.coms.iter().any(|(b, _, _)| *b == base) {
                return Err(SetupError::LpcPort(port.com));
            }
            let name = format!("com{}", port.com);
            let (out, input) = p.open_backend(&name, &port.backend, stdio)?;
            if let Some(fd) = input {
                p.add_input(fd, InputSink::Com(port.com - 1));
            }
            p.coms.push((base, irq, Uart16550::new(out)));
        }
        Ok(p)
    }

    fn add_input(&mut self, fd: RawFd, sink: InputSink) {
        match self.inputs.iter_mut().find(|s| s.fd == fd) {
            Some(src) => src.sinks.push(sink),
            None => self.inputs.push(InputSource {
                fd,
                sinks: vec![sink],
            }),
        }
    }

    /// A character backend: the writer for guest output and the descriptor of host input.
    fn open_backend(
        &mut self,
        port: &str,
        backend: &CharBackend,
        stdio: Stdio,
    ) -> Result<(Box<dyn Write + Send>, Option<RawFd>), SetupError> {
        let err = |path: &std::path::Path, err: std::io::Error| SetupError::Backend {
            port: port.to_string(),
            path: path.to_path_buf(),
            err,
        };
        match backend {
            CharBackend::Stdio => Ok((stdio(), Some(STDIN))),
            CharBackend::File(path) => {
                let f = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|e| err(path, e))?;
                Ok((Box::new(f), None))
            }
            CharBackend::Tty(path) => {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| err(path, e))?;
                let input = f.try_clone().map_err(|e| err(path, e))?;
                let fd = input.as_raw_fd();
                self.owned_fds.push(input.into());
                Ok((Box::new(f), Some(fd)))
            }
            CharBackend::Pty(link) => {
                let (master, slave, name) =
                    open_pty().map_err(|e| err(std::path::Path::new("/dev/ptmx"), e))?;
                if let Some(link) = link {
                    let _ = std::fs::remove_file(link);
                    std::os::unix::fs::symlink(&name, link).map_err(|e| err(link, e))?;
                }
                eprintln!(
                    "acrn-dm: virtio-console port {port} is on {}",
                    name.display()
                );
                let out = std::fs::File::from(master.try_clone().map_err(|e| err(&name, e))?);
                let fd = master.as_raw_fd();
                self.owned_fds.push(master);
                // Keeping the slave open makes reads wait for input instead of failing while
                // nobody has the pty open.
                self.owned_fds.push(slave);
                Ok((Box::new(out), Some(fd)))
            }
        }
    }

    /// Host functions to assign once the VM exists.
    pub fn passthrough(&self) -> &[Passthrough] {
        &self.passthrough
    }

    /// Devices to create in the hypervisor (HC_ADD_VDEV) once the VM exists.
    pub fn hv_vdevs(&self) -> &[HvVdev] {
        &self.hv_vdevs
    }

    /// Shared-memory regions to map into the guest: (guest-physical address, host address,
    /// length).
    pub fn shm_mappings(&self) -> Vec<(u64, u64, u64)> {
        self.shm
            .iter()
            .map(|(gpa, r)| (*gpa, r.host_addr(), r.len()))
            .collect()
    }

    /// Serves every virtqueue as if the guest had notified it (`--virtio_poll`).
    pub fn poll_devices(&mut self) {
        for s in self.pci.values_mut() {
            s.func.poll();
        }
        self.collect_irqs();
    }

    /// Host descriptors to poll for guest-bound input.
    pub fn input_sources(&self) -> Vec<InputSource> {
        self.inputs.clone()
    }

    /// Bytes read from a host descriptor, for `sinks`.
    pub fn input(&mut self, sinks: &[InputSink], bytes: &[u8]) {
        for sink in sinks {
            match sink {
                InputSink::Com(i) => {
                    let base = COM_PORTS[usize::from(*i)].0;
                    if let Some((_, _, u)) = self.coms.iter_mut().find(|(b, _, _)| *b == base) {
                        u.receive(bytes);
                    }
                }
                InputSink::Pci(d, f) => {
                    if let Some(s) = self.pci.get_mut(&(*d, *f)) {
                        s.func.host_input(bytes);
                    }
                }
            }
        }
        self.collect_irqs();
    }

    /// The INTx routes for the DSDT's `_PRT`.
    pub fn intx_routes(&self) -> Vec<IntxRoute> {
        let mut routes: Vec<IntxRoute> = self
            .pci
            .iter()
            .filter_map(|(&(slot, _), s)| s.gsi.map(|gsi| IntxRoute { slot, pin: 0, gsi }))
            .collect();
        routes.extend_from_slice(&self.pt_routes);
        routes
    }

    fn now_ns(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    /// Raises ISA IRQ 0 (GSI 2, the MADT's override) when the PIT's channel 0 is due, and says
    /// how long until it is due next (at most [`PIT_IDLE_CHECK`], at least [`PIT_MIN_PERIOD`]:
    /// a guest programming a tiny count gets coalesced interrupts, not a spinning acrn-dm).
    pub fn pit_tick(&mut self) -> Duration {
        let now = self.now_ns();
        if self.pit.take_irq0(now) {
            self.irqs.push((PIT_GSI, GsiOp::RaisingPulse));
        }
        self.pit
            .next_irq0(now)
            .map_or(PIT_IDLE_CHECK, |at| Duration::from_nanos(at - now))
            .clamp(PIT_MIN_PERIOD, PIT_IDLE_CHECK)
    }

    fn com_at(&mut self, port: u16) -> Option<(u16, u32, &mut Uart16550)> {
        self.coms
            .iter_mut()
            .find(|(base, _, _)| (*base..*base + 8).contains(&port))
            .map(|(b, i, u)| (*b, *i, u))
    }

    fn collect_irqs(&mut self) {
        for (_, irq, u) in &mut self.coms {
            if let Some(level) = u.take_irq_change() {
                // ISA IRQ: edge-triggered, active high.
                let op = if level { GsiOp::SetHigh } else { GsiOp::SetLow };
                self.irqs.push((*irq, op));
            }
        }
        for s in self.pci.values_mut() {
            if let (Some(gsi), Some(assert)) = (s.gsi, s.func.take_intx()) {
                // PCI INTx from _PRT: level-triggered, active low, so asserting drives it low.
                let op = if assert {
                    GsiOp::SetLow
                } else {
                    GsiOp::SetHigh
                };
                self.irqs.push((gsi, op));
            }
        }
    }

    fn find_bar(&mut self, kind: BarKind, addr: u64) -> Option<(&mut dyn PciFunction, usize, u64)> {
        for s in self.pci.values_mut() {
            for i in 0..6 {
                if let Some((k, base, size, true)) = s.func.config().bar_addr(i) {
                    if k == kind && (base..base + size).contains(&addr) {
                        return Some((&mut *s.func, i, addr - base));
                    }
                }
            }
        }
        None
    }

    fn pm_write(&mut self, port: u16, size: u8, value: u32) {
        match (port, size) {
            (p, 2) if p == PM1A_EVT_ADDR => self.pm1_sts &= !(value as u16),
            (p, 4) if p == PM1A_EVT_ADDR => {
                self.pm1_sts &= !(value as u16);
                self.pm1_en = (value >> 16) as u16;
            }
            (p, 2) if p == PM1A_EVT_ADDR + 2 => self.pm1_en = value as u16,
            (p, 2) if p == PM1A_CNT_ADDR => {
                let v = value as u16;
                if v & PM1_SLP_EN != 0 && (v >> 10) & 7 == S5_SLP_TYP {
                    self.exit = Some(VmExit::PowerOff);
                }
                self.pm1_cnt = (v & !PM1_SLP_EN) | PM1_SCI_EN;
            }
            _ => {}
        }
    }

    fn pm_read(&self, port: u16, size: u8) -> Option<u64> {
        Some(match (port, size) {
            (p, 2) if p == PM1A_EVT_ADDR => u64::from(self.pm1_sts),
            (p, 4) if p == PM1A_EVT_ADDR => {
                u64::from(self.pm1_sts) | (u64::from(self.pm1_en) << 16)
            }
            (p, 2) if p == PM1A_EVT_ADDR + 2 => u64::from(self.pm1_en),
            (p, 2) if p == PM1A_CNT_ADDR => u64::from(self.pm1_cnt),
            _ => return None,
        })
    }
}

/// A new pseudo-terminal in raw mode: (master, slave, slave's path).
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd, PathBuf)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors; no name buffer, default settings.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and ours.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: the buffer's size is passed; ptsname_r NUL-terminates.
    if unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: NUL-terminated by ptsname_r.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    // SAFETY: termios calls on our own slave descriptor.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave.as_raw_fd(), &mut t) == 0 {
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(slave.as_raw_fd(), libc::TCSANOW, &t);
        }
    }
    Ok((
        master,
        slave,
        PathBuf::from(name.to_string_lossy().into_owned()),
    ))
}

impl IoHandler for Platform {
    fn read(&mut self, access: Access) -> u64 {
        let v = match access {
            Access::PciCfg {
                bus: 0,
                dev,
                func,
                reg,
                size,
            } => self
                .pci
                .get(&(dev, func))
                .map_or(u64::MAX, |s| u64::from(s.func.config().read(reg, size))),
            Access::PciCfg { .. } => u64::MAX,
            Access::Pio { port, size } => {
                if let Some((base, _, u)) = self.com_at(port) {
                    u64::from(u.read(port - base))
                } else if (rtc::RTC_INDEX_PORT..=rtc::RTC_DATA_PORT).contains(&port) && size == 1 {
                    u64::from(self.rtc.read(port))
                } else if acrn_i8254::Pit::claims(port) && size == 1 {
                    let now = self.now_ns();
                    u64::from(self.pit.read(port, now))
                } else if let Some(v) = self.pm_read(port, size) {
                    v
                } else if port == RESET_PORT && size == 1 {
                    u64::from(self.cf9)
                } else if let Some((f, bar, off)) = self.find_bar(BarKind::Io, port.into()) {
                    f.bar_read(bar, off, size)
                } else {
                    u64::MAX
                }
            }
            Access::Mmio { addr, size } => match self.find_bar(BarKind::Mem32, addr) {
                Some((f, bar, off)) => f.bar_read(bar, off, size),
                None => u64::MAX,
            },
        };
        self.collect_irqs();
        v
    }

    fn write(&mut self, access: Access, value: u64) {
        match access {
            Access::PciCfg {
                bus: 0,
                dev,
                func,
                reg,
                size,
            } => {
                if let Some(s) = self.pci.get_mut(&(dev, func)) {
                    s.func.config_mut().write(reg, size, value as u32);
                }
            }
            Access::PciCfg { .. } => {}
            Access::Pio { port, size } => {
                if let Some((base, _, u)) = self.com_at(port) {
                    u.write(port - base, value as u8);
                } else if (rtc::RTC_INDEX_PORT..=rtc::RTC_DATA_PORT).contains(&port) && size == 1 {
                    self.rtc.write(port, value as u8);
                } else if acrn_i8254::Pit::claims(port) && size == 1 {
                    let now = self.now_ns();
                    self.pit.write(port, value as u8, now);
                } else if (PM1A_EVT_ADDR..PM1A_CNT_ADDR + 2).contains(&port) {
                    self.pm_write(port, size, value as u32);
                } else if port == RESET_PORT && size == 1 {
                    self.cf9 = value as u8 & !CF9_RST_CPU;
                    if value as u8 & CF9_RST_CPU != 0 {
                        self.exit = Some(VmExit::Reset);
                    }
                } else if port == KBC_CMD_PORT && size == 1 && value == 0xFE {
                    self.exit = Some(VmExit::Reset);
                } else if let Some((f, bar, off)) = self.find_bar(BarKind::Io, port.into()) {
                    f.bar_write(bar, off, size, value);
                }
            }
            Access::Mmio { addr, size } => {
                if let Some((f, bar, off)) = self.find_bar(BarKind::Mem32, addr) {
                    f.bar_write(bar, off, size, value);
                }
            }
        }
        self.collect_irqs();
    }

    fn drain_irqs(&mut self) -> Vec<(u32, GsiOp)> {
        std::mem::take(&mut self.irqs)
    }

    fn take_exit(&mut self) -> Option<VmExit> {
        self.exit.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{self, Command};

    fn config(line: &str) -> DmConfig {
        let args: Vec<&str> = line.split_whitespace().collect();
        match cli::parse(&args).unwrap() {
            Command::Run(c) => *c,
            other => panic!("{other:?}"),
        }
    }

    fn null_stdio() -> Box<dyn Write + Send> {
        Box::new(std::io::sink())
    }

    const NO_SYSFS: &str = "/nonexistent-sysfs";

    fn build(line: &str, sysfs: &str) -> Result<Platform, SetupError> {
        Platform::build(
            &config(line),
            Arc::new(GuestMemory::heap(128 << 20)),
            null_stdio,
            std::path::Path::new(sysfs),
        )
    }

    fn platform(line: &str) -> Platform {
        build(line, NO_SYSFS).unwrap()
    }

    fn build_err(line: &str) -> String {
        build(line, NO_SYSFS).err().unwrap().to_string()
    }

    fn cfg_read(p: &mut Platform, dev: u8, reg: u16, size: u8) -> u64 {
        p.read(Access::PciCfg {
            bus: 0,
            dev,
            func: 0,
            reg,
            size,
        })
    }

    #[test]
    fn pci_config_space_through_the_bus() {
        let mut p = platform("-s 0:0,hostbridge -s 1:0,lpc vm");
        assert_eq!(cfg_read(&mut p, 0, 0, 4), 0x5AF0_8086);
        assert_eq!(cfg_read(&mut p, 1, 0x0A, 2), 0x0601);
        assert_eq!(cfg_read(&mut p, 2, 0, 4), u64::MAX, "empty slot");
        assert_eq!(
            p.read(Access::PciCfg {
                bus: 1,
                dev: 0,
                func: 0,
                reg: 0,
                size: 4
            }),
            u64::MAX
        );
        assert_eq!(
            p.read(Access::Pio {
                port: 0x3F8,
                size: 1
            }),
            u64::MAX,
            "no COM1 without -l"
        );
    }

    #[test]
    fn the_pit_counts_and_interrupts_through_the_bus() {
        let mut p = platform("vm");
        let pio = |port| Access::Pio { port, size: 1 };
        // Channel 2 in mode 0 from 0xFFFF with gate 2 high, as Linux calibrates its TSC.
        p.write(pio(0x61), 0x01);
        p.write(pio(0x43), 0xB0);
        p.write(pio(0x42), 0xFF);
        p.write(pio(0x42), 0xFF);
        let first = p.read(pio(0x42)) | p.read(pio(0x42)) << 8;
        std::thread::sleep(Duration::from_millis(2));
        let later = p.read(pio(0x42)) | p.read(pio(0x42)) << 8;
        assert!(later < first, "counts down: {first:#x} then {later:#x}");
        assert_eq!(p.read(pio(0x61)) & 0x01, 0x01);
        // Channel 0 periodic at 1 kHz: ISA IRQ 0 pulses GSI 2.
        p.write(pio(0x43), 0x34);
        p.write(pio(0x40), 0xA9);
        p.write(pio(0x40), 0x04);
        assert!(p.pit_tick() <= Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(2));
        p.pit_tick();
        assert_eq!(p.drain_irqs(), vec![(2, GsiOp::RaisingPulse)]);
    }

    #[test]
    fn the_rtc_answers_on_0x70() {
        let mut p = platform("vm");
        p.write(
            Access::Pio {
                port: 0x70,
                size: 1,
            },
            0x0D,
        );
        assert_eq!(
            p.read(Access::Pio {
                port: 0x71,
                size: 1
            }),
            0x80
        );
        p.write(
            Access::Pio {
                port: 0x70,
                size: 1,
            },
            0x09,
        );
        let yy = p.read(Access::Pio {
            port: 0x71,
            size: 1,
        });
        assert!(yy != 0xFF && yy & 0x0F < 10, "a BCD year: {yy:#x}");
    }

    #[test]
    fn power_off_and_reset_registers() {
        let mut p = platform("vm");
        assert_eq!(
            p.read(Access::Pio {
                port: PM1A_CNT_ADDR,
                size: 2
            }) & 1,
            1,
            "SCI_EN"
        );
        // S3 type with SLP_EN is not a power-off.
        p.write(
            Access::Pio {
                port: PM1A_CNT_ADDR,
                size: 2,
            },
            (3 << 10) | (1 << 13),
        );
        assert_eq!(p.take_exit(), None);
        p.write(
            Access::Pio {
                port: PM1A_CNT_ADDR,
                size: 2,
            },
            (5 << 10) | (1 << 13),
        );
        assert_eq!(p.take_exit(), Some(VmExit::PowerOff));
        assert_eq!(p.take_exit(), None, "taken once");
        p.write(
            Access::Pio {
                port: RESET_PORT,
                size: 1,
            },
            0x02,
        );
        assert_eq!(p.take_exit(), None);
        p.write(
            Access::Pio {
                port: RESET_PORT,
                size: 1,
            },
            0x06,
        );
        assert_eq!(p.take_exit(), Some(VmExit::Reset));
        p.write(
            Access::Pio {
                port: KBC_CMD_PORT,
                size: 1,
            },
            0xFE,
        );
        assert_eq!(p.take_exit(), Some(VmExit::Reset));
        // PM1 status is write-one-to-clear, enable is plain.
        p.write(
            Access::Pio {
                port: PM1A_EVT_ADDR + 2,
                size: 2,
            },
            0x0100,
        );
        assert_eq!(
            p.read(Access::Pio {
                port: PM1A_EVT_ADDR,
                size: 4
            }),
            0x0100_0000
        );
    }

    #[test]
    fn com_ports_and_a_pci_uart() {
        let mut p = platform("-s 1:0,lpc -l com1,stdio -l com2,stdio -s 5,uart,stdio vm");
        assert_eq!(
            p.input_sources(),
            [InputSource {
                fd: STDIN,
                sinks: vec![InputSink::Pci(5, 0), InputSink::Com(0), InputSink::Com(1)]
            }]
        );
        p.write(
            Access::Pio {
                port: 0x2FC,
                size: 1,
            },
            0x08,
        );
        p.write(
            Access::Pio {
                port: 0x2F9,
                size: 1,
            },
            0x01,
        );
        p.input(&[InputSink::Com(1)], b"z");
        assert_eq!(p.drain_irqs(), [(3, GsiOp::SetHigh)], "COM2 is IRQ 3");
        assert_eq!(
            p.intx_routes(),
            [IntxRoute {
                slot: 5,
                pin: 0,
                gsi: 16
            }]
        );
        assert_eq!(cfg_read(&mut p, 5, 0, 4), 0x9900_9710);
        let e = build_err("-s 1:0,lpc -l com2,stdio -l com2,stdio vm");
        assert!(e.contains("com2 is given twice"), "{e}");
    }

    #[test]
    fn com1_on_stdio_raises_irq4() {
        let mut p = platform("-s 1:0,lpc -l com1,stdio vm");
        p.write(
            Access::Pio {
                port: 0x3FC,
                size: 1,
            },
            0x08,
        ); // OUT2
        p.write(
            Access::Pio {
                port: 0x3F9,
                size: 1,
            },
            0x01,
        ); // RX interrupt
        assert_eq!(
            p.input_sources(),
            [InputSource {
                fd: STDIN,
                sinks: vec![InputSink::Com(0)]
            }]
        );
        p.input(&[InputSink::Com(0)], b"ls\n");
        assert_eq!(p.drain_irqs(), [(4, GsiOp::SetHigh)]);
        assert_eq!(
            p.read(Access::Pio {
                port: 0x3F8,
                size: 1
            }),
            u64::from(b'l')
        );
        p.read(Access::Pio {
            port: 0x3F8,
            size: 1,
        });
        p.read(Access::Pio {
            port: 0x3F8,
            size: 1,
        });
        assert_eq!(p.drain_irqs(), [(4, GsiOp::SetLow)]);
    }

    #[test]
    fn virtio_blk_bar_routing_and_intx() {
        let img = std::env::temp_dir().join(format!("acrn-dm-plat-{}", std::process::id()));
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let mut p = platform(&format!(
            "-s 0:0,hostbridge -s 3,virtio-blk,{} vm",
            img.display()
        ));
        std::fs::remove_file(&img).unwrap();
        assert_eq!(
            p.intx_routes(),
            [IntxRoute {
                slot: 3,
                pin: 0,
                gsi: 16
            }]
        );
        assert_eq!(cfg_read(&mut p, 3, 0, 4), 0x1001_1AF4);
        assert_eq!(cfg_read(&mut p, 3, 0x10, 4), u64::from(PCI_IO_BASE) | 1);
        // The BAR answers only once I/O decoding is enabled.
        assert_eq!(
            p.read(Access::Pio {
                port: PCI_IO_BASE + 0x14,
                size: 4
            }),
            u64::MAX
        );
        p.write(
            Access::PciCfg {
                bus: 0,
                dev: 3,
                func: 0,
                reg: 4,
                size: 2,
            },
            1,
        );
        assert_eq!(
            p.read(Access::Pio {
                port: PCI_IO_BASE + 0x14,
                size: 4
            }),
            8,
            "8 sectors"
        );
        // Relocating the BAR moves the registers.
        p.write(
            Access::PciCfg {
                bus: 0,
                dev: 3,
                func: 0,
                reg: 0x10,
                size: 4,
            },
            0x3000,
        );
        assert_eq!(
            p.read(Access::Pio {
                port: 0x3014,
                size: 4
            }),
            8
        );
        assert_eq!(
            p.read(Access::Pio {
                port: PCI_IO_BASE + 0x14,
                size: 4
            }),
            u64::MAX
        );
    }

    #[test]
    fn hypervisor_devices_and_shared_memory() {
        let name = format!("acrn-dm-plat-{}", std::process::id());
        let mut p = platform(&format!(
            "-s 0:0,hostbridge -s 8,ivshmem,hv:/shm_region_0,2,0 -s 16,uart,vuart_idx:1 \
             -s 9,ivshmem,dm:/{name},4 vm"
        ));
        let v = p.hv_vdevs();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].addr.dev, 8);
        assert_eq!(
            v[0].vdev.io_addr[..3],
            [0x8000_0000, 0x8000_1000, 0x8020_000C]
        );
        assert_eq!(v[1].vdev.io_addr[..2], [0x8040_0000, 0x8040_1000]);
        assert_eq!(v[1].vdev.args[..4], 1u32.to_le_bytes());
        // The hypervisor owns those slots: nothing answers for them here.
        assert_eq!(cfg_read(&mut p, 8, 0, 4), u64::MAX);
        // dm-land: config space here, BAR2 backed by the region at a size-aligned address.
        assert_eq!(cfg_read(&mut p, 9, 0, 4), 0x1110_1AF4);
        let maps = p.shm_mappings();
        assert_eq!(maps.len(), 1);
        assert_eq!((maps[0].0, maps[0].2), (0x8080_0000, 4 << 20));
        assert_eq!(cfg_read(&mut p, 9, 0x18, 4), 0x8080_0000);
        let c = std::ffi::CString::new(format!("/{name}")).unwrap();
        // SAFETY: removing the test's own object.
        unsafe { libc::shm_unlink(c.as_ptr()) };
    }

    #[test]
    fn consoles_and_their_input() {
        let mut p = platform("-s 1:0,lpc -l com1,stdio -s 3,virtio-console,@stdio:stdio_port vm");
        assert_eq!(
            p.input_sources(),
            [InputSource {
                fd: STDIN,
                sinks: vec![InputSink::Pci(3, 0), InputSink::Com(0)]
            }]
        );
        assert_eq!(
            p.intx_routes(),
            [IntxRoute {
                slot: 3,
                pin: 0,
                gsi: 16
            }]
        );
        assert_eq!(cfg_read(&mut p, 3, 0, 4), 0x1003_1AF4);
        // Input reaches both devices without a panic even before the guest set anything up.
        p.input(&[InputSink::Pci(3, 0), InputSink::Com(0)], b"x");

        let link = std::env::temp_dir().join(format!("acrn-dm-pty-{}", std::process::id()));
        let p = platform(&format!("-s 3,virtio-console,@pty:p={} vm", link.display()));
        let target = std::fs::read_link(&link).unwrap();
        std::fs::remove_file(&link).unwrap();
        assert!(target.starts_with("/dev/pts/"), "{}", target.display());
        let src = p.input_sources();
        assert_eq!(src.len(), 1);
        assert_ne!(src[0].fd, STDIN);
        assert_eq!(src[0].sinks, [InputSink::Pci(3, 0)]);

        let file = std::env::temp_dir().join(format!("acrn-dm-con-{}", std::process::id()));
        let p = platform(&format!(
            "-s 3,virtio-console,@file:f={} vm",
            file.display()
        ));
        assert!(p.input_sources().is_empty(), "a file gives no input");
        std::fs::remove_file(&file).unwrap();
    }

    #[test]
    fn passthrough_gets_virtual_bars_and_an_intx_route() {
        let root = std::env::temp_dir().join(format!("acrn-dm-pt-{}", std::process::id()));
        let host = PciAddr {
            bus: 0,
            dev: 0x1f,
            func: 3,
        };
        passthru::tests::fake_sysfs(&root, host, Some("pci-stub"));
        let p = build(
            "-s 0:0,hostbridge -s 3,virtio-blk,/dev/null -s 6,passthru,00/1f/3 vm",
            root.to_str().unwrap(),
        )
        .unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        let pt = p.passthrough();
        assert_eq!(pt.len(), 1);
        let d = pt[0].dev;
        assert_eq!((d.virt_bdf, d.phys_bdf), (6 << 3, (0x1f << 3) | 3));
        // BAR0 64 KiB memory, BAR2 32 ports after virtio's I/O BAR, BAR3 16 MiB 64-bit
        // prefetchable (upper half 0).
        assert_eq!(d.bar, [0x8000_0000, 0, 0x2040 | 1, 0x8100_0000 | 0xC, 0, 0]);
        assert_eq!((d.intr_line, d.intr_pin), (17, 1));
        let irq = pt[0].irq.unwrap();
        assert_eq!((irq.intx.virt_pin, irq.intx.phys_pin), (17, 19));
        assert_eq!(
            p.intx_routes(),
            [
                IntxRoute {
                    slot: 3,
                    pin: 0,
                    gsi: 16
                },
                IntxRoute {
                    slot: 6,
                    pin: 0,
                    gsi: 17
                }
            ]
        );
    }

    /// Nothing a guest does panics the platform: random port, MMIO and configuration accesses
    /// (including BAR moves, queue setups at random frames and notifies over random memory).
    #[test]
    fn random_guest_accesses_do_not_panic() {
        let img = std::env::temp_dir().join(format!("acrn-dm-fuzz-{}", std::process::id()));
        std::fs::write(&img, vec![0x11u8; 64 * 1024]).unwrap();
        let mem = Arc::new(GuestMemory::heap(128 << 20));
        let cfg = config(&format!(
            "-s 0:0,hostbridge -s 1:0,lpc -l com1,stdio -s 3,virtio-blk,{} \
             -s 4,virtio-console,@stdio:p vm",
            img.display()
        ));
        let mut p = Platform::build(
            &cfg,
            mem.clone(),
            null_stdio,
            std::path::Path::new(NO_SYSFS),
        )
        .unwrap();
        std::fs::remove_file(&img).unwrap();
        // xorshift64: deterministic, no extra crate.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Random guest memory below 2 MiB, where the random queue frames point.
        for gpa in (0..0x20_0000u64).step_by(8) {
            mem.write(gpa, &next().to_le_bytes()).unwrap();
        }
        let sizes = [1u8, 2, 4, 8];
        for _ in 0..200_000 {
            let r = next();
            let size = sizes[(r & 3) as usize];
            let value = next();
            let write = r & 4 != 0;
            let access = match (r >> 3) % 4 {
                0 => Access::PciCfg {
                    bus: 0,
                    dev: ((r >> 8) % 8) as u8,
                    func: 0,
                    reg: ((r >> 16) & 0xFFF) as u16,
                    size: size.min(4),
                },
                1 => Access::Pio {
                    port: 0x2000 + ((r >> 8) % 0x100) as u16,
                    size: size.min(4),
                },
                2 => Access::Pio {
                    port: (r >> 8) as u16,
                    size: size.min(4),
                },
                _ => Access::Mmio {
                    addr: 0x8000_0000 + ((r >> 8) % 0x10_0000),
                    size,
                },
            };
            // Queue frames and notifies aimed at the devices' registers, half the time.
            let value = if r & 0x100 != 0 { value % 0x200 } else { value };
            if write {
                p.write(access, value);
            } else {
                p.read(access);
            }
            p.drain_irqs();
        }
        // Power-off or reset may have been hit at random; both are just values.
        let _ = p.take_exit();
    }

    #[test]
    fn unsupported_runtime_devices_are_named() {
        let e = build_err("-s 4,uart,/dev/nonexistent-tty vm");
        assert!(e.contains("/dev/nonexistent-tty"), "{e}");
        let e = build_err("-s 4,passthru,00/02/0,gpu vm");
        assert!(e.contains("option \"gpu\""), "{e}");
        let e = build_err("-s 4,passthru,00/02/0 vm");
        assert!(e.contains("0000:00:02.0"), "{e}");
        let e = build_err("-s 3,virtio-console,@stdio:a,pty:b vm");
        assert!(e.contains("exactly one port"), "{e}");
        let e = build_err("-l com1,stdio vm");
        assert!(e.contains("lpc"), "{e}");
        let e = build_err("-s 3,virtio-blk,/nonexistent/disk.img vm");
        assert!(e.contains("/nonexistent/disk.img"), "{e}");
    }
}
