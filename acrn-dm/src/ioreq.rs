//! The I/O request client: the shared 4 KiB request page (one 256-byte slot per vCPU), the
//! ATTACH loop, and dispatch of port, MMIO and PCI-configuration requests to an [`IoHandler`].
//!
//! Protocol (reference §2.1, §4.2, §6.2): the HSM hands a slot to acrn-dm by setting it
//! PROCESSING with `kernel_handled == 0`; acrn-dm emulates the access, stores a read's value in
//! the slot, and calls NOTIFY_REQUEST_FINISH, upon which the HSM marks it COMPLETE. The HSM
//! already turned 0xCF8/0xCFC accesses into PCICFG requests.

use crate::vmm::VmControl;
use acrn_abi::ioreq::{
    IoReqState, IoRequest, IoRequestBuffer, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_TYPE_MMIO,
    ACRN_IOREQ_TYPE_PCICFG, ACRN_IOREQ_TYPE_PORTIO, ACRN_IO_REQUEST_MAX,
};
use acrn_abi::irq::GsiOp;
use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The request page, page-aligned as the HSM requires (it pins it and gives the hypervisor its
/// physical address).
#[repr(C, align(4096))]
pub struct IoreqPage(UnsafeCell<IoRequestBuffer>);

// SAFETY: the slots are shared with the kernel and the hypervisor by design; ownership of a
// slot is handed over through its atomic `processed` field, and this process only touches a
// slot while it is PROCESSING (owned by the device model).
unsafe impl Sync for IoreqPage {}

impl IoreqPage {
    /// A page with every slot FREE.
    pub fn new() -> Box<Self> {
        Box::new(Self(UnsafeCell::new(IoRequestBuffer::new())))
    }

    /// Its user-space address (for `acrn_vm_creation.ioreq_buf`).
    pub fn addr(&self) -> u64 {
        self.0.get() as u64
    }

    /// Slot `i` (a vCPU id below 16).
    pub fn slot_ptr(&self, i: usize) -> *mut IoRequest {
        assert!(i < ACRN_IO_REQUEST_MAX);
        // SAFETY: in bounds of the array inside the cell.
        unsafe { (*self.0.get()).req_slot.as_mut_ptr().add(i) }
    }
}

/// Where an access goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Port I/O.
    Pio {
        /// Port.
        port: u16,
        /// 1, 2 or 4.
        size: u8,
    },
    /// Memory-mapped I/O.
    Mmio {
        /// Guest-physical address.
        addr: u64,
        /// 1, 2, 4 or 8.
        size: u8,
    },
    /// PCI configuration space (from 0xCF8/0xCFC, decoded by the HSM).
    PciCfg {
        /// Bus.
        bus: u8,
        /// Device.
        dev: u8,
        /// Function.
        func: u8,
        /// Register offset (0..4096).
        reg: u16,
        /// 1, 2 or 4.
        size: u8,
    },
}

/// A guest event that ends the VM's run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// ACPI S5 (PM1a SLP_EN with SLP_TYP 5).
    PowerOff,
    /// Reset (0xCF9, the keyboard controller).
    Reset,
}

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The guest asked.
    Guest(VmExit),
    /// The stop flag was set (SIGINT/SIGTERM).
    Signal,
    /// The HSM destroyed the client (ATTACH returned ENODEV).
    ClientGone,
}

/// The emulated machine, as seen by the request loop.
pub trait IoHandler {
    /// A read; all ones where nothing answers.
    fn read(&mut self, access: Access) -> u64;
    /// A write.
    fn write(&mut self, access: Access, value: u64);
    /// Interrupt line changes produced since the last call.
    fn drain_irqs(&mut self) -> Vec<(u32, GsiOp)>;
    /// A power-off or reset the guest requested, once.
    fn take_exit(&mut self) -> Option<VmExit>;
}

fn size_mask(size: u64) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

/// Decodes and serves one slot the device model owns.
///
/// # Safety
///
/// `slot` must be a PROCESSING slot of a live page not handled by a kernel client.
unsafe fn serve_slot(slot: *mut IoRequest, handler: &mut dyn IoHandler) {
    // SAFETY: the caller owns the slot; every payload view is plain integers.
    let (kind, mut payload) = unsafe { ((*slot).r#type, (*slot).reqs) };
    // SAFETY (unions below): every view of the 64-byte payload is plain integers.
    match kind {
        ACRN_IOREQ_TYPE_PORTIO => {
            let p = unsafe { &mut payload.pio_request };
            let access = Access::Pio {
                port: p.address as u16,
                size: p.size as u8,
            };
            if p.direction == ACRN_IOREQ_DIR_WRITE {
                handler.write(access, u64::from(p.value) & size_mask(p.size));
            } else {
                p.value = (handler.read(access) & size_mask(p.size)) as u32;
            }
        }
        ACRN_IOREQ_TYPE_MMIO => {
            let m = unsafe { &mut payload.mmio_request };
            let access = Access::Mmio {
                addr: m.address,
                size: m.size as u8,
            };
            if m.direction == ACRN_IOREQ_DIR_WRITE {
                handler.write(access, m.value & size_mask(m.size));
            } else {
                m.value = handler.read(access) & size_mask(m.size);
            }
        }
        ACRN_IOREQ_TYPE_PCICFG => {
            let c = unsafe { &mut payload.pci_request };
            let access = Access::PciCfg {
                bus: c.bus as u8,
                dev: c.dev as u8,
                func: c.func as u8,
                reg: c.reg as u16,
                size: c.size as u8,
            };
            if c.direction == ACRN_IOREQ_DIR_WRITE {
                handler.write(access, u64::from(c.value) & size_mask(c.size));
            } else {
                c.value = (handler.read(access) & size_mask(c.size)) as u32;
            }
        }
        other => {
            // ACRN's acrn-dm exits on these (e.g. write-protect requests); completing them
            // unchanged keeps the vCPU going.
            eprintln!("acrn-dm: ignoring I/O request of unknown type {other}");
        }
    }
    // SAFETY: still ours until the notify below.
    unsafe { (*slot).reqs = payload };
}

/// Serves every slot of the first `vcpus` that is PROCESSING for the device model, notifying
/// the HSM per slot; then applies interrupt changes. Returns how many requests were served.
pub fn serve_pending<C: VmControl + ?Sized>(
    ctl: &C,
    vmid: u16,
    page: &IoreqPage,
    vcpus: usize,
    handler: &Mutex<dyn IoHandler + Send + '_>,
) -> io::Result<usize> {
    let mut served = 0;
    for vcpu in 0..vcpus.min(ACRN_IO_REQUEST_MAX) {
        let slot = page.slot_ptr(vcpu);
        // SAFETY: reading the state atomically is always allowed; kernel_handled is written by
        // the HSM before it publishes PROCESSING with release ordering.
        let mine =
            unsafe { (*slot).state() == Ok(IoReqState::Processing) && (*slot).kernel_handled == 0 };
        if !mine {
            continue;
        }
        {
            let mut h = handler.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: PROCESSING and not kernel-handled: ours.
            unsafe { serve_slot(slot, &mut *h) };
        }
        ctl.notify_request_finish(vmid, vcpu as u32)?;
        served += 1;
    }
    flush_irqs(ctl, handler)?;
    Ok(served)
}

/// Each of the first `vcpus` slots' state and `kernel_handled`, for a report.
fn slot_states(page: &IoreqPage, vcpus: usize) -> String {
    (0..vcpus.min(ACRN_IO_REQUEST_MAX))
        .map(|vcpu| {
            let slot = page.slot_ptr(vcpu);
            // SAFETY: the state is read atomically; `kernel_handled` is a plain u32 read once.
            let (state, kernel) = unsafe { ((*slot).state(), (*slot).kernel_handled) };
            format!("{vcpu}: ({state:?}, {kernel})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies pending interrupt line changes, in order.
pub fn flush_irqs<C: VmControl + ?Sized>(
    ctl: &C,
    handler: &Mutex<dyn IoHandler + Send + '_>,
) -> io::Result<()> {
    // The lock is held across the ioctls: several threads (requests, console input, the
    // poller) flush, and a line's changes must reach the hypervisor in the order they happened.
    let mut h = handler.lock().unwrap_or_else(|p| p.into_inner());
    for (gsi, op) in h.drain_irqs() {
        ctl.set_irqline(gsi, op)?;
    }
    Ok(())
}

/// The request loop: ATTACH (blocking), serve, until the guest powers off or resets, `stop` is
/// set (checked whenever ATTACH returns, including on EINTR), or the client is destroyed.
pub fn run<C: VmControl + ?Sized>(
    ctl: &C,
    vmid: u16,
    page: &IoreqPage,
    vcpus: usize,
    handler: &Mutex<dyn IoHandler + Send + '_>,
    stop: &AtomicBool,
) -> io::Result<Stopped> {
    // ATTACH returns only when the HSM has a request for us; returns that find none mean the
    // HSM's map of pending requests and the page disagree, which would spin here for good.
    let mut idle_returns: u64 = 0;
    loop {
        if stop.load(Ordering::Acquire) {
            return Ok(Stopped::Signal);
        }
        match ctl.attach_ioreq_client() {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                // The stop watcher destroys the client to end a blocked ATTACH.
                if stop.load(Ordering::Acquire) {
                    return Ok(Stopped::Signal);
                }
                return Ok(Stopped::ClientGone);
            }
            Err(e) => return Err(e),
        }
        if serve_pending(ctl, vmid, page, vcpus, handler)? == 0 {
            idle_returns += 1;
            if idle_returns.is_power_of_two() && idle_returns >= 1 << 16 {
                eprintln!(
                    "acrn-dm: ATTACH_IOREQ_CLIENT returned {idle_returns} times in a row with no \
                     request for the device model; slots (state, kernel_handled): {}",
                    slot_states(page, vcpus)
                );
            }
        } else {
            idle_returns = 0;
        }
        if let Some(exit) = handler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_exit()
        {
            return Ok(Stopped::Guest(exit));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::fake::{Call, FakeHsm};
    use acrn_abi::ioreq::{IoRequestPayload, MmioRequest, PciRequest, PioRequest};
    use acrn_abi::vm::AcrnVmCreation;

    /// Records accesses; answers reads with a fixed pattern; port 0x404 writes power off.
    #[derive(Default)]
    struct Recorder {
        log: Vec<(Access, Option<u64>)>,
        exit: Option<VmExit>,
        irqs: Vec<(u32, GsiOp)>,
    }

    impl IoHandler for Recorder {
        fn read(&mut self, access: Access) -> u64 {
            self.log.push((access, None));
            0x1122_3344_5566_7788
        }
        fn write(&mut self, access: Access, value: u64) {
            self.log.push((access, Some(value)));
            if access
                == (Access::Pio {
                    port: 0x404,
                    size: 2,
                })
            {
                self.exit = Some(VmExit::PowerOff);
                self.irqs.push((9, GsiOp::SetHigh));
            }
        }
        fn drain_irqs(&mut self) -> Vec<(u32, GsiOp)> {
            std::mem::take(&mut self.irqs)
        }
        fn take_exit(&mut self) -> Option<VmExit> {
            self.exit.take()
        }
    }

    fn pio(port: u64, size: u64, write: Option<u32>) -> IoRequestPayload {
        IoRequestPayload {
            pio_request: PioRequest {
                direction: write.map_or(0, |_| 1),
                reserved: 0,
                address: port,
                size,
                value: write.unwrap_or(0xDEAD_BEEF),
            },
        }
    }

    #[test]
    fn dispatches_each_kind_and_completes_through_the_hsm() {
        let hsm = FakeHsm::new(4);
        let page = IoreqPage::new();
        let mut cv = AcrnVmCreation {
            ioreq_buf: page.addr(),
            ..Default::default()
        };
        hsm.create_vm(&mut cv).unwrap();
        let mmio = IoRequestPayload {
            mmio_request: MmioRequest {
                direction: 0,
                reserved: 0,
                address: 0x8000_0010,
                size: 8,
                value: 0,
            },
        };
        let cfg = IoRequestPayload {
            pci_request: PciRequest {
                direction: 0,
                reserved: [0; 3],
                size: 2,
                value: 0,
                bus: 0,
                dev: 3,
                func: 0,
                reg: 0x102,
            },
        };
        hsm.batches.lock().unwrap().push_back(vec![
            (0, ACRN_IOREQ_TYPE_PORTIO, pio(0x3F8, 1, None)),
            (2, ACRN_IOREQ_TYPE_MMIO, mmio),
            (3, ACRN_IOREQ_TYPE_PCICFG, cfg),
        ]);
        hsm.batches.lock().unwrap().push_back(vec![(
            1,
            ACRN_IOREQ_TYPE_PORTIO,
            pio(0x404, 2, Some(0x3400)),
        )]);
        let rec = Mutex::new(Recorder::default());
        let stop = AtomicBool::new(false);
        let out = run(&hsm, 1, &page, 4, &rec, &stop).unwrap();
        assert_eq!(out, Stopped::Guest(VmExit::PowerOff));

        let log = rec.lock().unwrap().log.clone();
        assert_eq!(
            log,
            [
                (
                    Access::Pio {
                        port: 0x3F8,
                        size: 1
                    },
                    None
                ),
                (
                    Access::Mmio {
                        addr: 0x8000_0010,
                        size: 8
                    },
                    None
                ),
                (
                    Access::PciCfg {
                        bus: 0,
                        dev: 3,
                        func: 0,
                        reg: 0x102,
                        size: 2
                    },
                    None
                ),
                (
                    Access::Pio {
                        port: 0x404,
                        size: 2
                    },
                    Some(0x3400)
                ),
            ]
        );
        // Read values are stored in the slots, masked to the access size.
        unsafe {
            assert_eq!((*page.slot_ptr(0)).reqs.pio_request.value, 0x88);
            assert_eq!(
                (*page.slot_ptr(2)).reqs.mmio_request.value,
                0x1122_3344_5566_7788
            );
            assert_eq!((*page.slot_ptr(3)).reqs.pci_request.value, 0x7788);
            for i in 0..4 {
                assert_eq!(
                    (*page.slot_ptr(i)).state(),
                    Ok(IoReqState::Complete),
                    "slot {i}"
                );
            }
        }
        let calls = hsm.calls();
        let notifies: Vec<_> = calls
            .iter()
            .filter(|c| matches!(c, Call::Notify(_)))
            .collect();
        assert_eq!(
            notifies,
            [
                &Call::Notify(0),
                &Call::Notify(2),
                &Call::Notify(3),
                &Call::Notify(1)
            ]
        );
        assert!(calls.contains(&Call::Irq(9, GsiOp::SetHigh)));
    }

    #[test]
    fn kernel_handled_and_free_slots_are_left_alone() {
        let hsm = FakeHsm::new(2);
        let page = IoreqPage::new();
        let mut cv = AcrnVmCreation {
            ioreq_buf: page.addr(),
            ..Default::default()
        };
        hsm.create_vm(&mut cv).unwrap();
        unsafe {
            let s = page.slot_ptr(0);
            (*s).r#type = ACRN_IOREQ_TYPE_PORTIO;
            (*s).reqs = pio(0x60, 1, None);
            (*s).kernel_handled = 1;
            (*s).set_state(IoReqState::Processing);
            (*page.slot_ptr(1)).set_state(IoReqState::Pending);
        }
        let rec = Mutex::new(Recorder::default());
        assert_eq!(serve_pending(&hsm, 1, &page, 2, &rec).unwrap(), 0);
        assert!(rec.lock().unwrap().log.is_empty());
        assert!(!hsm.calls().iter().any(|c| matches!(c, Call::Notify(_))));
    }

    #[test]
    fn stop_flag_and_destroyed_client_end_the_loop() {
        let hsm = FakeHsm::new(1);
        let page = IoreqPage::new();
        let rec = Mutex::new(Recorder::default());
        let stop = AtomicBool::new(true);
        assert_eq!(
            run(&hsm, 1, &page, 1, &rec, &stop).unwrap(),
            Stopped::Signal
        );
        stop.store(false, Ordering::Release);
        assert_eq!(
            run(&hsm, 1, &page, 1, &rec, &stop).unwrap(),
            Stopped::ClientGone
        );
    }

    #[test]
    fn page_is_page_aligned() {
        let p = IoreqPage::new();
        assert_eq!(p.addr() % 4096, 0);
        assert_eq!(std::mem::size_of::<IoreqPage>(), 4096);
    }
}
