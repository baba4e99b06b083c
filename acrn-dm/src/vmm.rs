//! The `/dev/acrn_hsm` operations acrn-dm uses, as a trait so the VM logic runs against a fake
//! in tests. [`acrn_hsm::uapi::HsmDevice`] is the real implementation; [`VmHandle`] makes sure
//! a created VM is destroyed on every exit path.

use crate::monitor::MonitorPage;
use acrn_abi::device::{AcrnPcidev, AcrnVdev};
use acrn_abi::irq::{AcrnPtdevIrq, GsiOp};
use acrn_abi::memory::AcrnVmMemmap;
use acrn_abi::regs::AcrnVcpuRegs;
use acrn_abi::vm::AcrnVmCreation;
use acrn_hsm::uapi::HsmDevice;
use std::io;

/// One VM's control file (the HSM binds one VM to one open file).
pub trait VmControl: Sync {
    /// `ACRN_IOCTL_CREATE_VM`.
    fn create_vm(&self, cv: &mut AcrnVmCreation) -> io::Result<()>;
    /// `ACRN_IOCTL_DESTROY_VM`.
    fn destroy_vm(&self) -> io::Result<()>;
    /// `ACRN_IOCTL_START_VM`.
    fn start_vm(&self) -> io::Result<()>;
    /// `ACRN_IOCTL_PAUSE_VM`.
    fn pause_vm(&self) -> io::Result<()>;
    /// `ACRN_IOCTL_SET_VCPU_REGS`.
    fn set_vcpu_regs(&self, regs: &AcrnVcpuRegs) -> io::Result<()>;
    /// `ACRN_IOCTL_SET_MEMSEG`.
    fn set_memseg(&self, map: &AcrnVmMemmap) -> io::Result<()>;
    /// `ACRN_IOCTL_CREATE_IOREQ_CLIENT`.
    fn create_ioreq_client(&self) -> io::Result<()>;
    /// `ACRN_IOCTL_ATTACH_IOREQ_CLIENT`: blocks until requests are pending.
    fn attach_ioreq_client(&self) -> io::Result<()>;
    /// `ACRN_IOCTL_DESTROY_IOREQ_CLIENT`.
    fn destroy_ioreq_client(&self) -> io::Result<()>;
    /// `ACRN_IOCTL_NOTIFY_REQUEST_FINISH`.
    fn notify_request_finish(&self, vmid: u16, vcpu: u32) -> io::Result<()>;
    /// `ACRN_IOCTL_SET_IRQLINE`.
    fn set_irqline(&self, gsi: u32, op: GsiOp) -> io::Result<()>;
    /// `ACRN_IOCTL_CREATE_VDEV` (the hypervisor's HC_ADD_VDEV).
    fn create_vdev(&self, dev: &AcrnVdev) -> io::Result<()>;
    /// `ACRN_IOCTL_VM_INTR_MONITOR` with the monitor page.
    fn vm_intr_monitor(&self, page: &MonitorPage) -> io::Result<()>;
    /// `ACRN_IOCTL_ASSIGN_PCIDEV`.
    fn assign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()>;
    /// `ACRN_IOCTL_DEASSIGN_PCIDEV`.
    fn deassign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()>;
    /// `ACRN_IOCTL_SET_PTDEV_INTR`.
    fn set_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()>;
    /// `ACRN_IOCTL_RESET_PTDEV_INTR`.
    fn reset_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()>;
}

impl VmControl for HsmDevice {
    fn create_vm(&self, cv: &mut AcrnVmCreation) -> io::Result<()> {
        HsmDevice::create_vm(self, cv)
    }
    fn destroy_vm(&self) -> io::Result<()> {
        HsmDevice::destroy_vm(self)
    }
    fn start_vm(&self) -> io::Result<()> {
        HsmDevice::start_vm(self)
    }
    fn pause_vm(&self) -> io::Result<()> {
        HsmDevice::pause_vm(self)
    }
    fn set_vcpu_regs(&self, regs: &AcrnVcpuRegs) -> io::Result<()> {
        HsmDevice::set_vcpu_regs(self, regs)
    }
    fn set_memseg(&self, map: &AcrnVmMemmap) -> io::Result<()> {
        HsmDevice::set_memseg(self, map)
    }
    fn create_ioreq_client(&self) -> io::Result<()> {
        HsmDevice::create_ioreq_client(self)
    }
    fn attach_ioreq_client(&self) -> io::Result<()> {
        HsmDevice::attach_ioreq_client(self)
    }
    fn destroy_ioreq_client(&self) -> io::Result<()> {
        HsmDevice::destroy_ioreq_client(self)
    }
    fn notify_request_finish(&self, vmid: u16, vcpu: u32) -> io::Result<()> {
        HsmDevice::notify_request_finish(self, vmid, vcpu)
    }
    fn set_irqline(&self, gsi: u32, op: GsiOp) -> io::Result<()> {
        HsmDevice::set_irqline(self, gsi, op)
    }
    fn create_vdev(&self, dev: &AcrnVdev) -> io::Result<()> {
        HsmDevice::create_vdev(self, dev)
    }
    fn vm_intr_monitor(&self, page: &MonitorPage) -> io::Result<()> {
        // SAFETY: a page-aligned MonitorPage, which vm::run keeps until the VM is gone.
        unsafe { HsmDevice::vm_intr_monitor(self, page.ptr()) }
    }
    fn assign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()> {
        HsmDevice::assign_pcidev(self, dev)
    }
    fn deassign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()> {
        HsmDevice::deassign_pcidev(self, dev)
    }
    fn set_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()> {
        HsmDevice::set_ptdev_intr(self, irq)
    }
    fn reset_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()> {
        HsmDevice::reset_ptdev_intr(self, irq)
    }
}

/// A created VM: paused, its I/O request client destroyed, its pass-through devices given back
/// and the VM destroyed when dropped, as ACRN's acrn-dm shuts down (the hypervisor destroys
/// only PAUSED VMs).
pub struct VmHandle<'a, C: VmControl + ?Sized> {
    ctl: &'a C,
    /// Relative VM ID from CREATE_VM.
    pub vmid: u16,
    /// vCPUs the hypervisor created.
    pub vcpus: u16,
    assigned: Vec<(AcrnPcidev, Option<AcrnPtdevIrq>)>,
}

impl<'a, C: VmControl + ?Sized> VmHandle<'a, C> {
    /// CREATE_VM; the returned handle owns the VM.
    ///
    /// Like ACRN's acrn-dm it tries `attempts` times, `delay` apart: a VM of the same name
    /// being destroyed (e.g. across a guest reset) frees its configuration slot a moment later.
    pub fn create(
        ctl: &'a C,
        cv: &mut AcrnVmCreation,
        attempts: u32,
        delay: std::time::Duration,
    ) -> io::Result<Self> {
        let mut tries = 1;
        while let Err(e) = ctl.create_vm(cv) {
            if tries >= attempts {
                return Err(e);
            }
            tries += 1;
            std::thread::sleep(delay);
        }
        Ok(Self {
            ctl,
            vmid: cv.vmid,
            vcpus: cv.vcpu_num,
            assigned: Vec::new(),
        })
    }

    /// ASSIGN_PCIDEV, then SET_PTDEV_INTR for its INTx line; both undone on drop. The error
    /// says which step failed.
    pub fn assign_pcidev(
        &mut self,
        dev: &AcrnPcidev,
        irq: Option<&AcrnPtdevIrq>,
    ) -> Result<(), (&'static str, io::Error)> {
        self.ctl
            .assign_pcidev(dev)
            .map_err(|e| ("ASSIGN_PCIDEV", e))?;
        self.assigned.push((*dev, None));
        if let Some(irq) = irq {
            self.ctl
                .set_ptdev_intr(irq)
                .map_err(|e| ("SET_PTDEV_INTR", e))?;
            if let Some(last) = self.assigned.last_mut() {
                last.1 = Some(*irq);
            }
        }
        Ok(())
    }

    /// The control file.
    pub fn ctl(&self) -> &'a C {
        self.ctl
    }
}

impl<C: VmControl + ?Sized> Drop for VmHandle<'_, C> {
    fn drop(&mut self) {
        // Each step may fail because the VM never got that far (e.g. no client yet, never
        // started); the later steps must still run.
        let _ = self.ctl.pause_vm();
        let _ = self.ctl.destroy_ioreq_client();
        for (dev, irq) in self.assigned.drain(..).rev() {
            if let Some(irq) = irq {
                if let Err(e) = self.ctl.reset_ptdev_intr(&irq) {
                    eprintln!("acrn-dm: RESET_PTDEV_INTR {:#x}: {e}", irq.phys_bdf);
                }
            }
            if let Err(e) = self.ctl.deassign_pcidev(&dev) {
                eprintln!("acrn-dm: DEASSIGN_PCIDEV {:#x}: {e}", dev.phys_bdf);
            }
        }
        if let Err(e) = self.ctl.destroy_vm() {
            eprintln!("acrn-dm: destroying VM {}: {e}", self.vmid);
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! A fake HSM that records every call and serves scripted I/O requests.

    use super::*;
    use crate::ioreq::IoreqPage;
    use acrn_abi::ioreq::{IoReqState, IoRequestPayload};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    /// What the fake saw, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Create {
            name: String,
            flags: u64,
            affinity: u64,
        },
        Destroy,
        Start,
        Pause,
        Regs(u16, u64),
        Memseg {
            gpa: u64,
            len: u64,
        },
        CreateClient,
        DestroyClient,
        Notify(u32),
        Irq(u32, GsiOp),
        Vdev {
            slot: u64,
            id: u64,
        },
        Assign(u16, u16),
        IntrMonitor(u32, u64),
        Deassign(u16, u16),
        PtIntr(u16, u32, u32),
        ResetPtIntr(u16),
    }

    /// One batch of requests the fake "hypervisor" posts before an ATTACH returns.
    pub type Batch = Vec<(usize, u32, IoRequestPayload)>;

    #[derive(Default)]
    pub struct FakeHsm {
        pub calls: Mutex<Vec<Call>>,
        pub batches: Mutex<VecDeque<Batch>>,
        pub page: Mutex<Option<usize>>,
        pub vcpus: u16,
        pub fail_memseg: bool,
        /// GET_DATA answers so far.
        pub monitor_probes: Mutex<u64>,
        /// CREATE_VM fails this many times first.
        pub create_failures: Mutex<u32>,
        /// ATTACH with nothing scripted blocks until the client is destroyed, as the HSM's
        /// does while the guest is idle (instead of failing at once).
        pub block_when_idle: bool,
        pub client_gone: (Mutex<bool>, std::sync::Condvar),
    }

    impl FakeHsm {
        pub fn new(vcpus: u16) -> Self {
            Self {
                vcpus,
                ..Default::default()
            }
        }
        fn log(&self, c: Call) {
            self.calls.lock().unwrap().push(c);
        }
        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
        fn page(&self) -> &IoreqPage {
            let addr = self.page.lock().unwrap().expect("no ioreq page");
            // SAFETY: the test keeps the page alive while the VM exists (like the kernel's pin).
            unsafe { &*(addr as *const IoreqPage) }
        }
    }

    impl VmControl for FakeHsm {
        fn create_vm(&self, cv: &mut AcrnVmCreation) -> io::Result<()> {
            let name = cv
                .name
                .iter()
                .take_while(|b| **b != 0)
                .map(|b| *b as char)
                .collect();
            self.log(Call::Create {
                name,
                flags: cv.vm_flag,
                affinity: cv.cpu_affinity,
            });
            let mut failures = self.create_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                cv.vmid = acrn_abi::vm::ACRN_INVALID_VMID;
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            *self.page.lock().unwrap() = Some(cv.ioreq_buf as usize);
            cv.vmid = 1;
            cv.vcpu_num = self.vcpus;
            Ok(())
        }
        fn destroy_vm(&self) -> io::Result<()> {
            self.log(Call::Destroy);
            Ok(())
        }
        fn start_vm(&self) -> io::Result<()> {
            self.log(Call::Start);
            Ok(())
        }
        fn pause_vm(&self) -> io::Result<()> {
            self.log(Call::Pause);
            Ok(())
        }
        fn set_vcpu_regs(&self, regs: &AcrnVcpuRegs) -> io::Result<()> {
            self.log(Call::Regs(regs.vcpu_id, regs.vcpu_regs.rip));
            Ok(())
        }
        fn set_memseg(&self, map: &AcrnVmMemmap) -> io::Result<()> {
            if self.fail_memseg {
                return Err(io::Error::from_raw_os_error(libc::ENOMEM));
            }
            self.log(Call::Memseg {
                gpa: map.user_vm_pa,
                len: map.len,
            });
            Ok(())
        }
        fn create_ioreq_client(&self) -> io::Result<()> {
            self.log(Call::CreateClient);
            Ok(())
        }
        fn attach_ioreq_client(&self) -> io::Result<()> {
            let Some(batch) = self.batches.lock().unwrap().pop_front() else {
                if self.block_when_idle {
                    let (gone, cv) = &self.client_gone;
                    let mut g = gone.lock().unwrap();
                    while !*g {
                        g = cv.wait(g).unwrap();
                    }
                }
                // Like a destroyed client.
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            };
            let page = self.page();
            for (vcpu, kind, payload) in batch {
                let slot = page.slot_ptr(vcpu);
                // SAFETY: the slot is FREE/COMPLETE, i.e. the "hypervisor's" here.
                unsafe {
                    (*slot).r#type = kind;
                    (*slot).reqs = payload;
                    (*slot).kernel_handled = 0;
                    (*slot).set_state(IoReqState::Processing);
                }
            }
            Ok(())
        }
        fn destroy_ioreq_client(&self) -> io::Result<()> {
            self.log(Call::DestroyClient);
            let (gone, cv) = &self.client_gone;
            *gone.lock().unwrap() = true;
            cv.notify_all();
            Ok(())
        }
        fn notify_request_finish(&self, _vmid: u16, vcpu: u32) -> io::Result<()> {
            // SAFETY: as in attach; the HSM completes the request.
            unsafe { (*self.page().slot_ptr(vcpu as usize)).set_state(IoReqState::Complete) };
            self.log(Call::Notify(vcpu));
            Ok(())
        }
        fn set_irqline(&self, gsi: u32, op: GsiOp) -> io::Result<()> {
            self.log(Call::Irq(gsi, op));
            Ok(())
        }
        fn create_vdev(&self, dev: &AcrnVdev) -> io::Result<()> {
            self.log(Call::Vdev {
                slot: dev.slot,
                id: dev.id,
            });
            Ok(())
        }
        fn assign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()> {
            self.log(Call::Assign(dev.virt_bdf, dev.phys_bdf));
            Ok(())
        }
        fn vm_intr_monitor(&self, page: &MonitorPage) -> io::Result<()> {
            // SAFETY: the monitor thread waits for this call.
            let m = unsafe { &mut *page.ptr() };
            self.log(Call::IntrMonitor(m.cmd, m.buffer[0]));
            if m.cmd == acrn_abi::irq::INTR_CMD_GET_DATA {
                // A storm on IRQ 33: its count grows by a million per probe.
                let mut n = self.monitor_probes.lock().unwrap();
                *n += 1;
                m.buffer[0] = 33;
                m.buffer[1] = *n * 1_000_000;
            }
            Ok(())
        }
        fn deassign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()> {
            self.log(Call::Deassign(dev.virt_bdf, dev.phys_bdf));
            Ok(())
        }
        fn set_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()> {
            self.log(Call::PtIntr(
                irq.phys_bdf,
                irq.intx.virt_pin,
                irq.intx.phys_pin,
            ));
            Ok(())
        }
        fn reset_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()> {
            self.log(Call::ResetPtIntr(irq.phys_bdf));
            Ok(())
        }
    }
}
