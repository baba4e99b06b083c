//! Linux user-space wrappers of the `/dev/acrn_hsm` ioctls (the interface acrn-dm uses).
//!
//! One [`HsmDevice`] is one open file and, as in Linux's HSM, at most one VM: the VM is created
//! with [`HsmDevice::create_vm`] and destroyed with [`HsmDevice::destroy_vm`] or when the file is
//! closed. Request numbers and argument layouts come from [`acrn_abi::ioctl`], which is tested
//! against `/usr/include/linux/acrn.h`.

use acrn_abi::device::{AcrnMmiodev, AcrnPcidev, AcrnVdev};
use acrn_abi::ioctl::*;
use acrn_abi::irq::{AcrnIntrMonitor, AcrnIrqlineOps, AcrnMsiEntry, AcrnPtdevIrq, GsiOp};
use acrn_abi::memory::AcrnVmMemmap;
use acrn_abi::pm::{AcrnCstateData, AcrnPstateData};
use acrn_abi::regs::AcrnVcpuRegs;
use acrn_abi::vm::AcrnVmCreation;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Path of the HSM device node.
pub const HSM_DEVICE_PATH: &str = "/dev/acrn_hsm";
/// Name of the device node in kernels before the driver was upstreamed (acrn-dm tries it first).
pub const LEGACY_DEVICE_PATH: &str = "/dev/acrn_vhm";

/// An open `/dev/acrn_hsm`.
#[derive(Debug)]
pub struct HsmDevice {
    file: File,
}

impl HsmDevice {
    /// Opens [`HSM_DEVICE_PATH`] read-write, close-on-exec.
    pub fn open() -> io::Result<Self> {
        Self::open_path(HSM_DEVICE_PATH)
    }

    /// Opens a device node at another path.
    pub fn open_path(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)?;
        Ok(Self { file })
    }

    /// Raw ioctl with a pointer or value argument.
    ///
    /// # Safety
    ///
    /// `arg` must be what `request` expects: a pointer to a live object of the request's
    /// argument type (writable for read requests), or the plain value for by-value requests.
    unsafe fn ioctl(&self, request: u32, arg: libc::c_ulong) -> io::Result<libc::c_int> {
        // SAFETY: forwarded from the caller; the fd is open for `self`'s lifetime.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, arg) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    fn ioctl_none(&self, request: u32) -> io::Result<()> {
        // SAFETY: `_IO` requests take no argument.
        unsafe { self.ioctl(request, 0) }.map(drop)
    }

    fn ioctl_in<T>(&self, request: u32, arg: &T) -> io::Result<()> {
        // SAFETY: `_IOW` requests only read `T` from the pointer.
        unsafe { self.ioctl(request, arg as *const T as libc::c_ulong) }.map(drop)
    }

    fn ioctl_inout<T>(&self, request: u32, arg: &mut T) -> io::Result<()> {
        // SAFETY: `_IOWR` requests read and write `T` through the pointer.
        unsafe { self.ioctl(request, arg as *mut T as libc::c_ulong) }.map(drop)
    }

    /// `ACRN_IOCTL_CREATE_VM`. `ioreq_buf` in `cv` must be the user address of a 4 KiB-aligned
    /// page that stays mapped while the VM exists; `vmid` and `vcpu_num` are written back.
    pub fn create_vm(&self, cv: &mut AcrnVmCreation) -> io::Result<()> {
        self.ioctl_inout(ACRN_IOCTL_CREATE_VM, cv)
    }

    /// `ACRN_IOCTL_DESTROY_VM`.
    pub fn destroy_vm(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_DESTROY_VM)
    }

    /// `ACRN_IOCTL_START_VM`.
    pub fn start_vm(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_START_VM)
    }

    /// `ACRN_IOCTL_PAUSE_VM`.
    pub fn pause_vm(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_PAUSE_VM)
    }

    /// `ACRN_IOCTL_RESET_VM`.
    pub fn reset_vm(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_RESET_VM)
    }

    /// `ACRN_IOCTL_SET_VCPU_REGS`.
    pub fn set_vcpu_regs(&self, regs: &AcrnVcpuRegs) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_SET_VCPU_REGS, regs)
    }

    /// `ACRN_IOCTL_INJECT_MSI`.
    pub fn inject_msi(&self, msi: &AcrnMsiEntry) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_INJECT_MSI, msi)
    }

    /// `ACRN_IOCTL_VM_INTR_MONITOR`: the hypervisor reads the command from, and writes its
    /// answer into, the [`AcrnIntrMonitor`] at the start of the page at `page`.
    ///
    /// # Safety
    ///
    /// `page` must be the address of a 4 KiB-aligned, writable page of this process that stays
    /// mapped until the VM is destroyed: the HSM keeps the last such page pinned and the
    /// hypervisor writes into it.
    pub unsafe fn vm_intr_monitor(&self, page: *mut AcrnIntrMonitor) -> io::Result<()> {
        // SAFETY: VM_INTR_MONITOR takes the page's address by value; the caller vouches for
        // the page.
        unsafe { self.ioctl(ACRN_IOCTL_VM_INTR_MONITOR, page as libc::c_ulong) }.map(drop)
    }

    /// `ACRN_IOCTL_SET_IRQLINE` (the operation is passed by value).
    pub fn set_irqline(&self, gsi: u32, op: GsiOp) -> io::Result<()> {
        let v = AcrnIrqlineOps { gsi, op: op as u32 }.to_u64();
        // SAFETY: SET_IRQLINE takes the packed value itself, not a pointer.
        unsafe { self.ioctl(ACRN_IOCTL_SET_IRQLINE, v as libc::c_ulong) }.map(drop)
    }

    /// `ACRN_IOCTL_NOTIFY_REQUEST_FINISH` for `vcpu` of this fd's VM.
    pub fn notify_request_finish(&self, vmid: u16, vcpu: u32) -> io::Result<()> {
        let n = AcrnIoreqNotify {
            vmid,
            reserved: 0,
            vcpu,
        };
        self.ioctl_in(ACRN_IOCTL_NOTIFY_REQUEST_FINISH, &n)
    }

    /// `ACRN_IOCTL_CREATE_IOREQ_CLIENT`: creates the default client.
    pub fn create_ioreq_client(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_CREATE_IOREQ_CLIENT)
    }

    /// `ACRN_IOCTL_ATTACH_IOREQ_CLIENT`: blocks until the default client has requests
    /// (`ENODEV` once it is destroyed).
    pub fn attach_ioreq_client(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_ATTACH_IOREQ_CLIENT)
    }

    /// `ACRN_IOCTL_DESTROY_IOREQ_CLIENT`.
    pub fn destroy_ioreq_client(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_DESTROY_IOREQ_CLIENT)
    }

    /// `ACRN_IOCTL_CLEAR_VM_IOREQ`.
    pub fn clear_vm_ioreq(&self) -> io::Result<()> {
        self.ioctl_none(ACRN_IOCTL_CLEAR_VM_IOREQ)
    }

    /// `ACRN_IOCTL_SET_MEMSEG`.
    pub fn set_memseg(&self, map: &AcrnVmMemmap) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_SET_MEMSEG, map)
    }

    /// `ACRN_IOCTL_UNSET_MEMSEG` (MMIO mappings only).
    pub fn unset_memseg(&self, map: &AcrnVmMemmap) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_UNSET_MEMSEG, map)
    }

    /// `ACRN_IOCTL_SET_PTDEV_INTR`.
    pub fn set_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_SET_PTDEV_INTR, irq)
    }

    /// `ACRN_IOCTL_RESET_PTDEV_INTR`.
    pub fn reset_ptdev_intr(&self, irq: &AcrnPtdevIrq) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_RESET_PTDEV_INTR, irq)
    }

    /// `ACRN_IOCTL_ASSIGN_PCIDEV`.
    pub fn assign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_ASSIGN_PCIDEV, dev)
    }

    /// `ACRN_IOCTL_DEASSIGN_PCIDEV`.
    pub fn deassign_pcidev(&self, dev: &AcrnPcidev) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_DEASSIGN_PCIDEV, dev)
    }

    /// `ACRN_IOCTL_ASSIGN_MMIODEV`.
    pub fn assign_mmiodev(&self, dev: &AcrnMmiodev) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_ASSIGN_MMIODEV, dev)
    }

    /// `ACRN_IOCTL_DEASSIGN_MMIODEV`.
    pub fn deassign_mmiodev(&self, dev: &AcrnMmiodev) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_DEASSIGN_MMIODEV, dev)
    }

    /// `ACRN_IOCTL_CREATE_VDEV`.
    pub fn create_vdev(&self, dev: &AcrnVdev) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_CREATE_VDEV, dev)
    }

    /// `ACRN_IOCTL_DESTROY_VDEV`.
    pub fn destroy_vdev(&self, dev: &AcrnVdev) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_DESTROY_VDEV, dev)
    }

    /// `ACRN_IOCTL_PM_GET_CPU_STATE` with a count command (`GET_PX_CNT`/`GET_CX_CNT`).
    pub fn pm_get_count(&self, cmd: u64) -> io::Result<u8> {
        let mut buf = PmBuf { cmd };
        self.pm(&mut buf)?;
        // SAFETY: every view is plain integers; the hypervisor writes the count in byte 0.
        Ok(unsafe { buf.cmd } as u8)
    }

    /// `ACRN_IOCTL_PM_GET_CPU_STATE` with `GET_PX_DATA`.
    pub fn pm_get_px_data(&self, cmd: u64) -> io::Result<AcrnPstateData> {
        let mut buf = PmBuf { cmd };
        self.pm(&mut buf)?;
        // SAFETY: as above.
        Ok(unsafe { buf.px })
    }

    /// `ACRN_IOCTL_PM_GET_CPU_STATE` with `GET_CX_DATA`.
    pub fn pm_get_cx_data(&self, cmd: u64) -> io::Result<AcrnCstateData> {
        let mut buf = PmBuf { cmd };
        self.pm(&mut buf)?;
        // SAFETY: as above.
        Ok(unsafe { buf.cx })
    }

    fn pm(&self, buf: &mut PmBuf) -> io::Result<()> {
        // SAFETY: the kernel reads the command from and writes at most 48 bytes to the pointer,
        // and `PmBuf` is 48 bytes.
        unsafe {
            self.ioctl(
                ACRN_IOCTL_PM_GET_CPU_STATE,
                buf as *mut PmBuf as libc::c_ulong,
            )
        }
        .map(drop)
    }

    /// `ACRN_IOCTL_IOEVENTFD`.
    pub fn ioeventfd(&self, arg: &AcrnIoeventfd) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_IOEVENTFD, arg)
    }

    /// `ACRN_IOCTL_IRQFD`.
    pub fn irqfd(&self, arg: &AcrnIrqfd) -> io::Result<()> {
        self.ioctl_in(ACRN_IOCTL_IRQFD, arg)
    }
}

impl AsRawFd for HsmDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// In: the command word; out: the largest PM answer.
#[repr(C)]
union PmBuf {
    cmd: u64,
    px: AcrnPstateData,
    cx: AcrnCstateData,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_are_linux_values() {
        // Values from `_IOC` on x86-64 (reference §3), independent of our const fns.
        assert_eq!(ACRN_IOCTL_CREATE_VM, 0xC030_A210);
        assert_eq!(ACRN_IOCTL_SET_VCPU_REGS, 0x4128_A216);
        assert_eq!(ACRN_IOCTL_SET_IRQLINE, 0x4008_A225);
        assert_eq!(ACRN_IOCTL_NOTIFY_REQUEST_FINISH, 0x4008_A231);
        assert_eq!(ACRN_IOCTL_ATTACH_IOREQ_CLIENT, 0x0000_A233);
        assert_eq!(ACRN_IOCTL_SET_MEMSEG, 0x4020_A241);
        assert_eq!(ACRN_IOCTL_PM_GET_CPU_STATE, 0xC008_A260);
        assert_eq!(ACRN_IOCTL_IOEVENTFD, 0x4020_A270);
        assert_eq!(ACRN_IOCTL_IRQFD, 0x4018_A271);
        assert_eq!(core::mem::size_of::<PmBuf>(), 48);
    }

    #[test]
    fn decode_fields_of_request_codes() {
        for &(code, name) in IOCTLS {
            assert_eq!((code >> 8) & 0xFF, ACRN_IOCTL_TYPE, "{name}");
            let dir = code >> 30;
            let size = (code >> 16) & 0x3FFF;
            assert_eq!(
                dir == IOC_NONE,
                size == 0,
                "{name}: _IO has no size, others do"
            );
        }
        // The argument-less requests.
        for code in [
            ACRN_IOCTL_DESTROY_VM,
            ACRN_IOCTL_START_VM,
            ACRN_IOCTL_PAUSE_VM,
            ACRN_IOCTL_RESET_VM,
        ] {
            assert_eq!(code >> 16, 0);
        }
    }

    #[test]
    fn opening_a_missing_device_is_an_error_not_a_panic() {
        let err = HsmDevice::open_path("/nonexistent/acrn_hsm").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn ioctls_on_a_non_hsm_file_fail_with_enotty() {
        // /dev/null accepts the open but knows none of the HSM requests.
        let dev = HsmDevice::open_path("/dev/null").unwrap();
        let err = dev.start_vm().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        let mut cv = AcrnVmCreation::default();
        assert_eq!(
            dev.create_vm(&mut cv).unwrap_err().raw_os_error(),
            Some(libc::ENOTTY)
        );
        let mut page = AcrnIntrMonitor::default();
        // SAFETY: /dev/null never dereferences the address.
        let r = unsafe { dev.vm_intr_monitor(&mut page) };
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENOTTY));
    }
}
