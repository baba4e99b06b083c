//! A VM's device bus: which device answers which port or guest-physical range, and the
//! device objects themselves. What the bus holds depends on the load order, as in ACRN:
//! every VM gets a vPIC and a vIOAPIC; pre-launched VMs and the Service VM also get their
//! console vUART and a vRTC (a post-launched VM's device model emulates those).

use super::ioapic::Vioapic;
use super::irq::{gsi_levels, LineOp, Message};
use super::pic::Vpic;
use super::rtc::Vrtc;
use super::uart::Vuart;
use crate::hvlog;
use crate::vm::Vm;
use acrn_abi::irq::GsiOp;
use acrn_static_config::{ConsoleVuart, LoadOrder};
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

struct ConsoleUart {
    uart: Mutex<Vuart>,
    /// The level last driven on the console's IRQ line.
    irq_level: AtomicBool,
}

impl ConsoleUart {
    /// Drives the console's IRQ line (GSI and 8259 input) to the UART's interrupt output when
    /// it changed: Linux's 8250 driver sends through THR-empty interrupts.
    fn update_irq(&self, vm: &Vm, pending: bool) {
        let gsi = vm.devices.layout.console_irq.load(Ordering::Relaxed);
        if gsi == NO_IRQ || self.irq_level.swap(pending, Ordering::AcqRel) == pending {
            return;
        }
        let op = if pending {
            GsiOp::SetHigh
        } else {
            GsiOp::SetLow
        };
        vm.devices.set_irqline(vm, gsi, op);
    }
}

struct IoApic {
    model: Mutex<Option<Vioapic>>,
}

struct Pic {
    model: Mutex<Option<Vpic>>,
}

struct Rtc {
    model: Mutex<Option<Vrtc>>,
}

/// Where the devices of one VM sit (fixed while the VM exists; read on every access).
struct Layout {
    /// The console vUART's base port, or [`NO_PORT`].
    console_port: AtomicU32,
    /// The console vUART's IRQ (GSI), or [`NO_IRQ`].
    console_irq: AtomicU32,
    rtc: AtomicBool,
}

const NO_PORT: u32 = u32::MAX;
const NO_IRQ: u32 = u32::MAX;

impl Layout {
    fn console_port(&self) -> Option<u16> {
        match self.console_port.load(Ordering::Relaxed) {
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
    ioapic: IoApic,
    pic: Pic,
    rtc: Rtc,
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

impl BusDevice for ConsoleUart {
    fn read(&self, vm: &Vm, addr: u64, _size: u8) -> u64 {
        let base = vm.devices.layout.console_port().unwrap_or(0) as u64;
        let (v, pending) = {
            let mut u = self.uart.lock();
            let v = u.read((addr - base) as u16);
            (v, u.interrupt_pending())
        };
        self.update_irq(vm, pending);
        v as u64
    }
    fn write(&self, vm: &Vm, addr: u64, _size: u8, value: u64) {
        let base = vm.devices.layout.console_port().unwrap_or(0) as u64;
        let pending = {
            let mut u = self.uart.lock();
            if let Some(line) = u.write((addr - base) as u16, value as u8) {
                prefix_line(vm, line);
            }
            u.interrupt_pending()
        };
        self.update_irq(vm, pending);
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
        if let Some(io) = self.model.lock().as_mut() {
            // A malformed access is ignored, as by the hardware.
            let _ = io.mmio_write(addr - IOAPIC_GPA, size, value as u32, |m| out.push(m));
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
        let now = rdtsc();
        self.model
            .lock()
            .as_mut()
            .map_or(0xFF, |r| r.io_read(addr as u16, now) as u64)
    }
    fn write(&self, vm: &Vm, addr: u64, _size: u8, value: u64) {
        let now = rdtsc();
        if let Some(r) = self.model.lock().as_mut() {
            r.io_write(addr as u16, value as u8, now);
        }
        // A write may raise a flag (or start the periodic interrupt) at once.
        vm.devices.tick(vm, now);
    }
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
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
                console_irq: AtomicU32::new(NO_IRQ),
                rtc: AtomicBool::new(false),
            },
            console: ConsoleUart {
                uart: Mutex::new(Vuart::new()),
                irq_level: AtomicBool::new(false),
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
            reported: Mutex::new(([(Space::Port, 0); REPORTED_MAX], 0)),
        }
    }

    /// Every device of `vm` in its reset state, laid out for its load order.
    pub fn reset(&self, vm: &Vm) {
        let info = vm.info();
        let order = info.map(|i| i.load_order);
        let post = order == Some(LoadOrder::PostLaunched);
        let console = match info.and_then(|i| i.cfg).map(|c| c.console) {
            Some(ConsoleVuart::Legacy { port, irq }) if !post => Some((port, irq)),
            _ => None,
        };
        self.layout.console_port.store(
            console.map_or(NO_PORT, |c| u32::from(c.0)),
            Ordering::Relaxed,
        );
        self.layout.console_irq.store(
            console.map_or(NO_IRQ, |c| u32::from(c.1)),
            Ordering::Relaxed,
        );
        self.console.irq_level.store(false, Ordering::Relaxed);
        self.layout.rtc.store(!post, Ordering::Relaxed);
        *self.console.uart.lock() = Vuart::new();
        let pins = if order == Some(LoadOrder::Service) {
            SERVICE_VM_PINS
        } else {
            USER_VM_PINS
        };
        *self.ioapic.model.lock() = Some(Vioapic::new(pins, 0));
        *self.pic.model.lock() = Some(Vpic::new());
        *self.rtc.model.lock() = (!post).then(|| {
            Vrtc::new(
                crate::hv::wall_clock() as i64,
                rdtsc(),
                crate::tsc::khz() as u64 * 1000,
            )
        });
        self.reported.lock().1 = 0;
    }

    /// The device at `addr` in `space`, if any.
    fn route(&self, space: Space, addr: u64) -> Option<&dyn BusDevice> {
        let layout = &self.layout;
        match space {
            Space::Port => {
                let port = addr as u16;
                if let Some(base) = layout.console_port() {
                    if (base..base.saturating_add(8)).contains(&port) {
                        return Some(&self.console);
                    }
                }
                match port {
                    0x20 | 0x21 | 0xA0 | 0xA1 | 0x4D0 | 0x4D1 => Some(&self.pic),
                    0x70 | 0x71 if layout.rtc.load(Ordering::Relaxed) => Some(&self.rtc),
                    _ => None,
                }
            }
            Space::Mmio => (addr & !0xFFF == IOAPIC_GPA).then_some(&self.ioapic as &dyn BusDevice),
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
            io.eoi(vector, |m| out.push(m));
        }
        out.deliver(vm);
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

    /// When the devices' own timers (the vRTC's) next need [`VmDevices::tick`].
    pub fn next_event(&self, now: u64) -> Option<u64> {
        self.rtc
            .model
            .lock()
            .as_ref()
            .and_then(|r| r.next_event(now))
    }

    /// Runs the devices' timers up to `now`.
    pub fn tick(&self, vm: &Vm, now: u64) {
        let raise = self.rtc.model.lock().as_mut().is_some_and(|r| r.tick(now));
        if raise {
            self.set_irqline(vm, RTC_IRQ, GsiOp::RaisingPulse);
        }
    }

    /// Prints what the console holds of an unfinished line (the VM stops).
    pub fn flush_console(&self, vm: &Vm) {
        if let Some(partial) = self.console.uart.lock().take_partial() {
            prefix_line(vm, partial);
        }
    }
}
