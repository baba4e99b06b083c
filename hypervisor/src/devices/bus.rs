//! A VM's device bus: which device answers which port or guest-physical range, and the
//! device objects themselves. What the bus holds depends on the load order, as in ACRN:
//! every VM gets a vPIC and a vIOAPIC; pre-launched VMs and the Service VM also get their
//! console vUART, a vRTC and the PIT's speaker timer (channel 2 and port 0x61, no interrupt;
//! a post-launched VM's device model emulates those). Every VM
//! gets the ends of its `vuart_connection`s: 16550s joined by a null-modem cable to the
//! matching end in the peer VM, at an I/O port (legacy) or behind a PCI vUART function on
//! the VM's virtual PCI (pre-launched VMs).

use super::held::{HeldInterrupts, HeldSource, Hold, MAX_DELAY_MS, MAX_HELD};
use super::ioapic::{RteFlags, Vioapic};
use super::irq::{gsi_levels, LineOp, Message};
use super::pci::{ConfigPorts, PciMmio, PtPorts, Vpci, CONSOLE_SLOT};
use super::physical::{PhysicalDevices, PhysicalEcam, PhysicalMmio};
use super::pic::Vpic;
use super::rtc::Vrtc;
use super::uart::{null_modem, ConsoleLine, Uart, FIFO_SIZE, RX_BUF_MAX, TERMINAL_ATTACHED};
use crate::hvlog;
use crate::vm::{Vm, MAX_VMS};
use acrn_abi::irq::GsiOp;
use acrn_i8254::SpeakerTimer;
use acrn_static_config::{ConsoleVuart, LoadOrder, VuartKind};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use spin::Mutex;

/// Guest-physical base of every VM's vIOAPIC (the guest ACPI tables announce it there).
pub const IOAPIC_GPA: u64 = 0xFEC0_0000;
/// vIOAPIC pins: ACRN gives pre- and post-launched VMs 48, and the Service VM the physical
/// IOAPICs' pins (one vIOAPIC here, with the most any IOAPIC has).
const USER_VM_PINS: usize = super::ioapic::ACRN_VIOAPIC_PINS;
const SERVICE_VM_PINS: usize = super::ioapic::MAX_PINS;
/// The RTC's line on both interrupt controllers.
const RTC_IRQ: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Port,
    Mmio,
}

/// A device on the bus. `addr` is the absolute port or guest-physical address; reads return
/// the low `size` bytes.
pub trait BusDevice {
    fn read(&self, vm: &Vm, addr: u64, size: u8) -> u64;
    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64);
}

/// Where a UART's interrupt output goes.
#[derive(Clone, Copy)]
enum PinOutput {
    /// ACRN's IRQ 0: a polled UART with no interrupt.
    None,
    /// An ISA IRQ on the vPIC and vIOAPIC.
    Irq(u32),
    /// The MSI-X vector of the VM's PCI vUART function in slot `index` (a link's index, or
    /// the console's slot).
    Pci(usize),
}

/// A UART, where its interrupt goes and the level its output last drove there.
struct UartPin<const RX: usize> {
    uart: Uart<RX>,
    out: PinOutput,
    high: bool,
}

impl<const RX: usize> UartPin<RX> {
    const fn new(rx_size: usize, inputs: u8, irq: u8) -> Self {
        UartPin {
            uart: Uart::new(rx_size, inputs),
            out: if irq == 0 {
                PinOutput::None
            } else {
                PinOutput::Irq(irq as u32)
            },
            high: false,
        }
    }

    /// The UART behind the PCI vUART function in slot `index`.
    const fn pci(rx_size: usize, inputs: u8, index: usize) -> Self {
        UartPin {
            uart: Uart::new(rx_size, inputs),
            out: PinOutput::Pci(index),
            high: false,
        }
    }

    /// A guest read (`value` None, returns the value) or write of register `offset`.
    fn access(&mut self, offset: u16, value: Option<u8>) -> u8 {
        match value {
            None => self.uart.read(offset),
            Some(v) => {
                self.uart.write(offset, v);
                0
            }
        }
    }

    /// Follows the UART's interrupt output. On an IRQ the vPIC and vIOAPIC see a level and
    /// act on the rising edge when the guest programmed the pin edge-triggered, as a 16550
    /// on the ISA bus is. A PCI function sends its MSI-X message on the rising edge.
    fn drive(&mut self, vm: &Vm) {
        match self.out {
            PinOutput::None => {}
            PinOutput::Irq(irq) => {
                let high = self.uart.irq_line();
                if high != self.high {
                    self.high = high;
                    let op = if high { GsiOp::SetHigh } else { GsiOp::SetLow };
                    vm.devices.set_irqline(vm, irq, op);
                }
            }
            PinOutput::Pci(index) => {
                self.high = self.uart.interrupt_pending();
                vm.devices.pci().vuart_follow(vm, index, self.high);
            }
        }
    }
}

/// The console: its transmitter goes to the physical console line by line.
struct Console {
    pin: UartPin<FIFO_SIZE>,
    line: ConsoleLine,
}

struct ConsoleUart {
    state: Mutex<Console>,
}

/// Most `vuart_connection` ends one VM has (ACRN's MAX_VUART_NUM_PER_VM is 8, the console
/// included).
pub const MAX_VUART_LINKS: usize = 7;

/// One end of a VM-to-VM vUART: the index of its entry in the VM's `VmConfig::vuarts`.
struct LinkPort {
    index: usize,
}

type LinkEnd = Mutex<UartPin<RX_BUF_MAX>>;

/// Every VM's link ends by VM id and index. Both ends of a cable are locked together (in the
/// order of (VM id, index), so two VMs writing to each other cannot deadlock) while bytes
/// and modem lines move and both IRQs follow.
static LINK_ENDS: [[LinkEnd; MAX_VUART_LINKS]; MAX_VMS] =
    [const { [const { Mutex::new(UartPin::new(0, 0, 0)) }; MAX_VUART_LINKS] }; MAX_VMS];

struct IoApic {
    model: Mutex<Option<Vioapic>>,
}

struct Pic {
    model: Mutex<Option<Vpic>>,
}

struct Rtc {
    model: Mutex<Option<Vrtc>>,
}

struct Speaker {
    model: Mutex<Option<SpeakerTimer>>,
}

/// Where the devices of one VM sit (fixed while the VM exists; read on every access).
struct Layout {
    /// The console vUART's base port, or [`NO_PORT`].
    console_port: AtomicU32,
    /// The console is a PCI vUART (its window is found through the vPCI).
    console_pci: AtomicBool,
    /// The base ports of the legacy link ends, by index, or [`NO_PORT`].
    link_ports: [AtomicU32; MAX_VUART_LINKS],
    /// The hypervisor emulates the VM's RTC and speaker timer (a post-launched VM's device
    /// model does).
    clocks: AtomicBool,
}

const NO_PORT: u32 = u32::MAX;

impl Layout {
    fn console_port(&self) -> Option<u16> {
        match self.console_port.load(Ordering::Relaxed) {
            NO_PORT => None,
            p => Some(p as u16),
        }
    }

    fn link_port(&self, index: usize) -> Option<u16> {
        match self.link_ports[index].load(Ordering::Relaxed) {
            NO_PORT => None,
            p => Some(p as u16),
        }
    }
}

/// Accesses nobody claimed that were reported, so each range is reported once per VM.
const REPORTED_MAX: usize = 32;

pub struct VmDevices {
    layout: Layout,
    console: ConsoleUart,
    links: [LinkPort; MAX_VUART_LINKS],
    ioapic: IoApic,
    pic: Pic,
    rtc: Rtc,
    speaker: Speaker,
    pci: Vpci,
    physical: PhysicalDevices,
    /// Pass-through interrupts held back by DELAY_INT.
    held: Mutex<HeldInterrupts>,
    /// The Service VM's: physical PCI configuration and device MMIO reach the hardware.
    owns_hardware: AtomicBool,
    reported: Mutex<([(Space, u64); REPORTED_MAX], usize)>,
}

fn prefix_line(vm: &Vm, text: &[u8]) {
    let mut buf = [0u8; 48];
    let name = vm.name().as_bytes();
    let n = name.len().min(buf.len() - 3);
    buf[0] = b'[';
    buf[1..1 + n].copy_from_slice(&name[..n]);
    buf[1 + n] = b']';
    buf[2 + n] = b' ';
    crate::console::vm_line(core::str::from_utf8(&buf[..3 + n]).unwrap_or("[?] "), text);
}

impl ConsoleUart {
    fn access(&self, vm: &Vm, addr: u64, value: Option<u8>) -> u8 {
        let base = vm.devices.layout.console_port().unwrap_or(0) as u64;
        self.register(vm, addr.wrapping_sub(base) as u16, value)
    }

    /// A guest access to register `offset`; what the guest sent goes out line by line.
    fn register(&self, vm: &Vm, offset: u16, value: Option<u8>) -> u8 {
        let mut c = self.state.lock();
        let c = &mut *c;
        let r = c.pin.access(offset, value);
        while let Some(b) = c.pin.uart.take_tx() {
            if let Some(line) = c.line.push(b) {
                prefix_line(vm, line);
            }
        }
        c.pin.drive(vm);
        r
    }
}

impl BusDevice for ConsoleUart {
    fn read(&self, vm: &Vm, addr: u64, _size: u8) -> u64 {
        self.access(vm, addr, None) as u64
    }
    fn write(&self, vm: &Vm, addr: u64, _size: u8, value: u64) {
        self.access(vm, addr, Some(value as u8));
    }
}

/// The other end of `vm`'s link `index`: the peer VM and its index, when the peer exists and
/// its own table names this end back.
fn link_peer(vm: &Vm, index: usize) -> Option<(&'static Vm, usize)> {
    let link = vm.info()?.cfg?.vuarts.get(index)?;
    let peer = crate::vm::vm(link.peer_vm)?;
    let peer_index = link.peer_index as usize;
    let back = peer.info()?.cfg?.vuarts.get(peer_index)?;
    let joined = peer.id != vm.id
        && peer_index < MAX_VUART_LINKS
        && back.peer_vm == vm.id
        && back.peer_index as usize == index;
    joined.then_some((peer, peer_index))
}

/// Runs `f` on `vm`'s link end `index` with the cable's state brought up to date: bytes and
/// modem lines moved between the two ends, and both IRQs following their UARTs.
fn with_link<R>(vm: &Vm, index: usize, f: impl FnOnce(&mut UartPin<RX_BUF_MAX>) -> R) -> R {
    let mine = &LINK_ENDS[vm.id as usize][index];
    let Some((peer, peer_index)) = link_peer(vm, index) else {
        // Nobody at the other end of the cable: what is sent goes nowhere, no line is up.
        let mut end = mine.lock();
        let r = f(&mut end);
        while end.uart.take_tx().is_some() {}
        end.uart.set_inputs(0);
        end.drive(vm);
        return r;
    };
    let theirs = &LINK_ENDS[peer.id as usize][peer_index];
    let (mut a, mut b) = if (vm.id, index) < (peer.id, peer_index) {
        let a = mine.lock();
        (a, theirs.lock())
    } else {
        let b = theirs.lock();
        (mine.lock(), b)
    };
    let r = f(&mut a);
    null_modem(&mut a.uart, &mut b.uart);
    a.drive(vm);
    b.drive(peer);
    r
}

impl LinkPort {
    fn access(&self, vm: &Vm, addr: u64, value: Option<u8>) -> u8 {
        let base = vm.devices.layout.link_port(self.index).unwrap_or(0) as u64;
        with_link(vm, self.index, |end| {
            end.access(addr.wrapping_sub(base) as u16, value)
        })
    }
}

impl BusDevice for LinkPort {
    fn read(&self, vm: &Vm, addr: u64, _size: u8) -> u64 {
        self.access(vm, addr, None) as u64
    }
    fn write(&self, vm: &Vm, addr: u64, _size: u8, value: u64) {
        self.access(vm, addr, Some(value as u8));
    }
}

/// The register windows (BAR0) of the VM's PCI vUART functions: the first 8 bytes are the
/// link's (or the console's) UART, byte-wide; the rest reads zero and ignores writes.
struct PciVuartWindow;

impl PciVuartWindow {
    fn access(vm: &Vm, addr: u64, value: Option<u8>) -> u8 {
        match vm.devices.pci().vuart_register(addr) {
            Some((CONSOLE_SLOT, Some(reg))) => vm.devices.console.register(vm, reg, value),
            Some((index, Some(reg))) => with_link(vm, index, |end| end.access(reg, value)),
            _ => 0,
        }
    }
}

impl BusDevice for PciVuartWindow {
    fn read(&self, vm: &Vm, addr: u64, _size: u8) -> u64 {
        Self::access(vm, addr, None) as u64
    }
    fn write(&self, vm: &Vm, addr: u64, _size: u8, value: u64) {
        Self::access(vm, addr, Some(value as u8));
    }
}

impl BusDevice for IoApic {
    fn read(&self, _vm: &Vm, addr: u64, size: u8) -> u64 {
        match self.model.lock().as_mut() {
            Some(io) => io
                .mmio_read(addr - IOAPIC_GPA, size)
                .map_or(u64::MAX, u64::from),
            None => u64::MAX,
        }
    }
    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64) {
        let mut out = Collected::new();
        let mut programmed = None;
        if let Some(io) = self.model.lock().as_mut() {
            // A malformed access is ignored, as by the hardware.
            let offset = addr - IOAPIC_GPA;
            if io
                .mmio_write(offset, size, value as u32, |m| out.push(m))
                .is_ok()
                && offset == 0x10
            {
                programmed = io
                    .selected_pin()
                    .and_then(|pin| Some((pin as u32, io.entry(pin).ok()?)));
            }
        }
        if let Some((gsi, rte)) = programmed {
            crate::vm::ptirq::guest_programmed(vm, gsi, rte);
        }
        out.deliver(vm);
    }
}

impl BusDevice for Pic {
    fn read(&self, _vm: &Vm, addr: u64, _size: u8) -> u64 {
        self.model
            .lock()
            .as_mut()
            .map_or(0xFF, |p| p.io_read(addr as u16) as u64)
    }
    fn write(&self, vm: &Vm, addr: u64, _size: u8, value: u64) {
        if let Some(p) = self.model.lock().as_mut() {
            p.io_write(addr as u16, value as u8);
        }
        kick_bsp(vm);
    }
}

impl BusDevice for Rtc {
    fn read(&self, _vm: &Vm, addr: u64, _size: u8) -> u64 {
        let now = crate::tsc::now();
        self.model
            .lock()
            .as_mut()
            .map_or(0xFF, |r| r.io_read(addr as u16, now) as u64)
    }
    fn write(&self, vm: &Vm, addr: u64, _size: u8, value: u64) {
        let now = crate::tsc::now();
        if let Some(r) = self.model.lock().as_mut() {
            r.io_write(addr as u16, value as u8, now);
        }
        // A write may raise a flag (or start the periodic interrupt) at once.
        vm.devices.tick(vm, now);
    }
}

impl BusDevice for Speaker {
    fn read(&self, _vm: &Vm, addr: u64, _size: u8) -> u64 {
        let now = crate::tsc::nanos(crate::tsc::now());
        self.model
            .lock()
            .as_mut()
            .map_or(0xFF, |t| t.read(addr as u16, now) as u64)
    }
    fn write(&self, _vm: &Vm, addr: u64, _size: u8, value: u64) {
        let now = crate::tsc::nanos(crate::tsc::now());
        if let Some(t) = self.model.lock().as_mut() {
            t.write(addr as u16, value as u8, now);
        }
    }
}

/// The vPIC's output goes to vCPU 0: its pCPU must look at it.
fn kick_bsp(vm: &Vm) {
    if let Some(p) = vm.vcpus[0].pcpu() {
        crate::vm::kick_pcpu(p);
    }
}

/// Messages a device produced under its lock, delivered after it is released.
struct Collected {
    msgs: [Option<Message>; 8],
    n: usize,
}

impl Collected {
    fn new() -> Self {
        Collected {
            msgs: [None; 8],
            n: 0,
        }
    }
    fn push(&mut self, m: Message) {
        if let Some(slot) = self.msgs.get_mut(self.n) {
            *slot = Some(m);
            self.n += 1;
        }
    }
    fn deliver(&self, vm: &Vm) {
        for m in self.msgs.iter().flatten() {
            vm.deliver(m, None);
        }
    }
}

impl Default for VmDevices {
    fn default() -> Self {
        Self::new()
    }
}

impl VmDevices {
    pub const fn new() -> Self {
        VmDevices {
            layout: Layout {
                console_port: AtomicU32::new(NO_PORT),
                console_pci: AtomicBool::new(false),
                link_ports: [const { AtomicU32::new(NO_PORT) }; MAX_VUART_LINKS],
                clocks: AtomicBool::new(false),
            },
            console: ConsoleUart {
                state: Mutex::new(Console {
                    pin: UartPin::new(FIFO_SIZE, TERMINAL_ATTACHED, 0),
                    line: ConsoleLine::new(),
                }),
            },
            links: {
                let mut links = [const { LinkPort { index: 0 } }; MAX_VUART_LINKS];
                let mut i = 0;
                while i < MAX_VUART_LINKS {
                    links[i].index = i;
                    i += 1;
                }
                links
            },
            ioapic: IoApic {
                model: Mutex::new(None),
            },
            pic: Pic {
                model: Mutex::new(None),
            },
            rtc: Rtc {
                model: Mutex::new(None),
            },
            speaker: Speaker {
                model: Mutex::new(None),
            },
            pci: Vpci::new(),
            physical: PhysicalDevices::new(),
            held: Mutex::new(HeldInterrupts::new()),
            owns_hardware: AtomicBool::new(false),
            reported: Mutex::new(([(Space::Port, 0); REPORTED_MAX], 0)),
        }
    }

    /// Every device of `vm` in its reset state, laid out for its load order.
    pub fn reset(&self, vm: &Vm) {
        let info = vm.info();
        let order = info.map(|i| i.load_order);
        let post = order == Some(LoadOrder::PostLaunched);
        let cfg = info.and_then(|i| i.cfg);
        let console = match cfg.map(|c| c.console) {
            Some(ConsoleVuart::Legacy { port, irq }) if !post => Some((port, irq)),
            _ => None,
        };
        // The PCI console's function is on the VM's vPCI: from the scenario (pre-launched VMs,
        // the Service VM), or added by the Device Model (`uart,vuart_idx:0`, post-launched VMs).
        let console_pci = matches!(cfg.map(|c| c.console), Some(ConsoleVuart::Pci { .. }));
        self.layout
            .console_pci
            .store(console_pci, Ordering::Relaxed);
        self.layout.console_port.store(
            console.map_or(NO_PORT, |(port, _)| u32::from(port)),
            Ordering::Relaxed,
        );
        self.layout.clocks.store(!post, Ordering::Relaxed);
        self.owns_hardware
            .store(order == Some(LoadOrder::Service), Ordering::Relaxed);
        *self.console.state.lock() = Console {
            pin: if console_pci {
                UartPin::pci(FIFO_SIZE, TERMINAL_ATTACHED, CONSOLE_SLOT)
            } else {
                UartPin::new(
                    FIFO_SIZE,
                    TERMINAL_ATTACHED,
                    console.map_or(0, |(_, irq)| irq),
                )
            },
            line: ConsoleLine::new(),
        };
        let pins = if order == Some(LoadOrder::Service) {
            SERVICE_VM_PINS
        } else {
            USER_VM_PINS
        };
        *self.ioapic.model.lock() = Some(Vioapic::new(pins, 0));
        crate::vm::ptirq::reset(vm);
        *self.pic.model.lock() = Some(Vpic::new());
        *self.rtc.model.lock() = (!post).then(|| {
            Vrtc::new(
                crate::hv::wall_clock() as i64,
                crate::tsc::now(),
                crate::tsc::khz() as u64 * 1000,
            )
        });
        *self.speaker.model.lock() = (!post).then(SpeakerTimer::default);
        self.pci.reset(vm);
        self.held.lock().clear();
        self.reported.lock().1 = 0;
        self.reset_links(vm);
    }

    /// The VM's link ends at power-on (legacy at their ports, PCI behind their functions),
    /// and their peers told that its lines dropped.
    fn reset_links(&self, vm: &Vm) {
        let links = vm.info().and_then(|i| i.cfg).map_or(&[][..], |c| c.vuarts);
        let rx_size = crate::hv::platform().hv.vuart_rx_buf_size as usize;
        for (index, end) in LINK_ENDS[vm.id as usize].iter().enumerate() {
            let kind = links.get(index).map(|l| l.kind);
            let port = match kind {
                Some(VuartKind::Legacy { port, .. }) => u32::from(port),
                _ => NO_PORT,
            };
            self.layout.link_ports[index].store(port, Ordering::Relaxed);
            *end.lock() = match kind {
                Some(VuartKind::Legacy { irq, .. }) => UartPin::new(rx_size, 0, irq),
                Some(VuartKind::Pci { .. }) => UartPin::pci(rx_size, 0, index),
                None => UartPin::new(rx_size, 0, 0),
            };
            if kind.is_some() {
                with_link(vm, index, |_| ());
            }
        }
    }

    /// The VM's virtual PCI.
    pub fn pci(&self) -> &Vpci {
        &self.pci
    }

    /// The device at `addr` in `space`, if any.
    fn route(&self, space: Space, addr: u64) -> Option<&dyn BusDevice> {
        let layout = &self.layout;
        match space {
            Space::Port => {
                let port = addr as u16;
                let at = |base: Option<u16>| {
                    base.is_some_and(|b| (b..b.saturating_add(8)).contains(&port))
                };
                if at(layout.console_port()) {
                    return Some(&self.console);
                }
                if let Some(i) = (0..MAX_VUART_LINKS).find(|&i| at(layout.link_port(i))) {
                    return Some(&self.links[i]);
                }
                if self.pci.claims_port(port) {
                    return Some(&ConfigPorts);
                }
                if self.pci.claims_pt_port(port) {
                    return Some(&PtPorts);
                }
                let hardware = self.owns_hardware.load(Ordering::Relaxed);
                match port {
                    0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => Some(&self.pic),
                    0x70 | 0x71 if layout.clocks.load(Ordering::Relaxed) => Some(&self.rtc),
                    p if layout.clocks.load(Ordering::Relaxed) && SpeakerTimer::claims(p) => {
                        Some(&self.speaker)
                    }
                    p if hardware && PhysicalDevices::claims_port(p) => Some(&self.physical),
                    _ => None,
                }
            }
            Space::Mmio if addr & !0xFFF == IOAPIC_GPA => Some(&self.ioapic),
            Space::Mmio if self.pci.vuart_register(addr).is_some() => Some(&PciVuartWindow),
            Space::Mmio if self.pci.claims_mmio(addr) => Some(&PciMmio),
            Space::Mmio if !self.owns_hardware.load(Ordering::Relaxed) => None,
            Space::Mmio if PhysicalEcam::claims(addr) => Some(&PhysicalEcam),
            Space::Mmio => {
                PhysicalDevices::claims_mmio(addr).then_some(&PhysicalMmio as &dyn BusDevice)
            }
        }
    }

    /// Whether a device answers `addr`.
    pub fn claims(&self, _vm: &Vm, space: Space, addr: u64) -> bool {
        self.route(space, addr).is_some()
    }

    /// A read (`value` None) or write of `size` bytes at `addr`; `None` if no device claims
    /// it. Reads return the value read.
    pub fn access(
        &self,
        vm: &Vm,
        space: Space,
        addr: u64,
        size: u8,
        value: Option<u64>,
    ) -> Option<u64> {
        if let (Space::Port, 0xCF8, 4, Some(v)) = (space, addr, size, value) {
            self.pci.observe_address(v as u32);
        }
        let dev = self.route(space, addr)?;
        Some(match value {
            None => dev.read(vm, addr, size),
            Some(v) => {
                dev.write(vm, addr, size, v);
                0
            }
        })
    }

    /// Says once per VM and range (port, or 4 KiB page) that an access found no device.
    pub fn report_unclaimed(&self, vm: &Vm, space: Space, addr: u64) {
        let key = match space {
            Space::Port => addr,
            Space::Mmio => addr & !0xFFF,
        };
        let mut r = self.reported.lock();
        let (list, n) = &mut *r;
        if list[..*n].contains(&(space, key)) {
            return;
        }
        if *n == REPORTED_MAX {
            return;
        }
        list[*n] = (space, key);
        *n += 1;
        let what = match space {
            Space::Port => "port",
            Space::Mmio => "MMIO page",
        };
        hvlog!(
            "VM {} {}: no device at {what} {key:#x}: reads return all-ones, writes are ignored (reported once)",
            vm.id,
            vm.name()
        );
        if *n == REPORTED_MAX {
            hvlog!(
                "VM {} {}: further accesses without a device are not reported",
                vm.id,
                vm.name()
            );
        }
    }

    /// A level-triggered interrupt's EOI: the vIOAPIC clears Remote IRR and re-sends a line
    /// that is still asserted.
    pub fn eoi(&self, vm: &Vm, vector: u8) {
        let mut out = Collected::new();
        if let Some(io) = self.ioapic.model.lock().as_mut() {
            // A remapped line is deasserted at its EOI (its physical pin, unmasked again,
            // asserts it anew if the device still requests).
            crate::vm::ptirq::eoi(vm, vector, |gsi| {
                let pin = gsi as usize;
                let delivered = io
                    .entry(pin)
                    .is_ok_and(|rte| rte & RteFlags::REMOTE_IRR.bits() != 0);
                if delivered {
                    let _ = io.set_irq(pin, LineOp::Deassert);
                }
                delivered
            });
            io.eoi(vector, |m| out.push(m));
        }
        out.deliver(vm);
    }

    /// A physical interrupt remapped to line `gsi` of the vIOAPIC: asserted until its EOI
    /// (`level`), else pulsed.
    pub fn raise_remapped(&self, vm: &Vm, gsi: u32, level: bool) {
        let op = if level { LineOp::Assert } else { LineOp::Pulse };
        let msg = self
            .ioapic
            .model
            .lock()
            .as_mut()
            .and_then(|io| io.set_irq(gsi as usize, op).ok().flatten());
        if let Some(m) = msg {
            vm.deliver(&m, None);
        }
    }

    /// HC_SET_IRQLINE and the VM's own interrupt sources: GSI `gsi` on the vIOAPIC and, below
    /// 16, the vPIC.
    pub fn set_irqline(&self, vm: &Vm, gsi: u32, op: GsiOp) {
        // The 8259 has no input 2 of its own (the cascade): GSI 2 is its IRQ 0, as in ACRN.
        let pic_irq = match gsi {
            2 => Some(0),
            0 | 1 | 3..=15 => Some(gsi as u8),
            _ => None,
        };
        for &high in gsi_levels(op) {
            let msg = match self.ioapic.model.lock().as_mut() {
                Some(io) => io.set_level(gsi as usize, high).ok().flatten(),
                None => None,
            };
            if let Some(m) = msg {
                vm.deliver(&m, None);
            }
            if let (Some(irq), Some(p)) = (pic_irq, self.pic.model.lock().as_mut()) {
                let line = if high {
                    LineOp::Assert
                } else {
                    LineOp::Deassert
                };
                let _ = p.set_irq(irq, line);
            }
        }
        if pic_irq.is_some() {
            kick_bsp(vm);
        }
    }

    /// The vector the vPIC presents on INTR, if any.
    pub fn pic_output(&self) -> Option<u8> {
        self.pic.model.lock().as_ref().and_then(|p| p.output())
    }

    /// The INTA cycle: the vector the vPIC delivers now.
    pub fn pic_acknowledge(&self) -> Option<u8> {
        let mut pic = self.pic.model.lock();
        let p = pic.as_mut()?;
        p.output()?;
        Some(p.acknowledge())
    }

    /// When the devices' own timers (the vRTC's, held pass-through interrupts) next need
    /// [`VmDevices::tick`].
    pub fn next_event(&self, now: u64) -> Option<u64> {
        let rtc = self
            .rtc
            .model
            .lock()
            .as_ref()
            .and_then(|r| r.next_event(now));
        rtc.into_iter().chain(self.held.lock().next_due()).min()
    }

    /// Runs the devices' timers up to `now`, and delivers the held interrupts now due.
    pub fn tick(&self, vm: &Vm, now: u64) {
        let raise = self.rtc.model.lock().as_mut().is_some_and(|r| r.tick(now));
        if raise {
            self.set_irqline(vm, RTC_IRQ, GsiOp::RaisingPulse);
        }
        let mut due = [None; MAX_HELD];
        let mut n = 0;
        self.held.lock().release_due(now, |s| {
            due[n] = Some(s);
            n += 1;
        });
        for source in due.into_iter().flatten() {
            self.deliver_passthrough(vm, source);
        }
    }

    /// HC_VM_INTR_MONITOR's DELAY_INT: the VM's pass-through interrupts wait `ms` from now on
    /// (0: none; at most [`MAX_DELAY_MS`]).
    pub fn set_interrupt_delay(&self, ms: u64) {
        let ticks = crate::tsc::ticks(ms.min(MAX_DELAY_MS) * 1_000_000);
        self.held.lock().set_delay(ticks);
    }

    /// A pass-through interrupt of `source` arrived: delivered now, or held back (DELAY_INT),
    /// in which case the pCPU of vCPU 0, which runs the VM's device timers, re-arms its timer.
    pub fn passthrough_interrupt(&self, vm: &Vm, source: HeldSource) {
        let hold = self.held.lock().hold(source, crate::tsc::now());
        match hold {
            Hold::DeliverNow => self.deliver_passthrough(vm, source),
            Hold::Held(_) => {
                if let Some(p) = vm.vcpus[0].pcpu() {
                    crate::vm::kick_pcpu(p);
                }
            }
            Hold::Folded => {}
        }
    }

    fn deliver_passthrough(&self, vm: &Vm, source: HeldSource) {
        match source {
            HeldSource::Intx { gsi, level } => self.raise_remapped(vm, gsi, level),
            HeldSource::Msi { slot, entry } => {
                if let Some((addr, data)) = self.pci.pt_message(slot, entry) {
                    let _ = vm.inject_msi(addr, u64::from(data));
                }
            }
        }
    }

    /// Whether the VM has a console vUART the hypervisor emulates.
    pub fn has_console(&self) -> bool {
        self.layout.console_port().is_some() || self.layout.console_pci.load(Ordering::Relaxed)
    }

    /// Puts bytes from the hypervisor shell into the console vUART's receive FIFO as far as
    /// it has room, raising its interrupt; returns how many it took.
    pub fn console_input(&self, vm: &Vm, bytes: &[u8]) -> usize {
        if !self.has_console() {
            return 0;
        }
        let mut c = self.console.state.lock();
        let n = bytes.len().min(c.pin.uart.rx_room());
        for &b in &bytes[..n] {
            c.pin.uart.receive(b);
        }
        c.pin.drive(vm);
        n
    }

    /// The vIOAPIC's pin count and redirection entries (for the shell).
    pub fn ioapic_entries(&self, mut f: impl FnMut(usize, u64)) -> usize {
        let io = self.ioapic.model.lock();
        let Some(io) = io.as_ref() else {
            return 0;
        };
        for pin in 0..io.pins() {
            if let Ok(rte) = io.entry(pin) {
                f(pin, rte);
            }
        }
        io.pins()
    }

    /// The vIOAPIC's pin count.
    pub fn vioapic_pins(&self) -> usize {
        self.ioapic.model.lock().as_ref().map_or(0, |io| io.pins())
    }

    /// The vIOAPIC's redirection entry of `gsi`.
    pub fn vioapic_entry(&self, gsi: u32) -> Option<u64> {
        let io = self.ioapic.model.lock();
        io.as_ref()?.entry(usize::try_from(gsi).ok()?).ok()
    }

    /// Prints what the console holds of an unfinished line (the VM stops).
    pub fn flush_console(&self, vm: &Vm) {
        if let Some(partial) = self.console.state.lock().line.take_partial() {
            prefix_line(vm, partial);
        }
    }
}
