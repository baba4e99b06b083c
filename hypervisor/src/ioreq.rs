//! I/O request forwarding: a post-launched VM's port or MMIO access that the hypervisor does not
//! emulate becomes a request in the Service VM's I/O request page (slot = vCPU id), as ACRN's
//! `acrn_insert_request` / `dm_emulate_io_complete` do:
//!
//! 1. [`post`]: the slot must be FREE; type and payload are written, then `processed` becomes
//!    PENDING with a release store. The caller then raises the upcall vector in the Service VM.
//! 2. The Service VM moves the slot to PROCESSING and then COMPLETE.
//! 3. [`take_completion`]: on COMPLETE (acquire load) the value is read back and the slot
//!    returns to FREE; for reads the caller merges the value into the guest register
//!    ([`merge_pio_read`], [`complete_mmio_read`]).
//!
//! The slot layout and states are `acrn-abi`'s. The slot lives in Service VM memory, which the
//! Service VM may scribble on at any time: nothing here trusts what it reads back beyond taking
//! `size` bytes of the value.

use crate::hypercall::GuestMemory;
use crate::vcpu::decode::Op;
use crate::vcpu::GuestRegs;
use acrn_abi::ioreq::{
    IoReqState, ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_STATE_FREE,
    ACRN_IOREQ_TYPE_MMIO, ACRN_IOREQ_TYPE_PORTIO, ACRN_IO_REQUEST_MAX,
};
use acrn_abi::{IoRequest, IoRequestPayload, MmioRequest, PioRequest};
use core::mem::{offset_of, size_of};
use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{fence, Ordering};

/// One access to forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Port I/O of `size` (1, 2 or 4) bytes; `value` is the data written (ignored for reads).
    Pio {
        port: u16,
        size: u8,
        write: bool,
        value: u32,
    },
    /// MMIO of `size` (1, 2, 4 or 8) bytes at guest-physical `gpa`.
    Mmio {
        gpa: u64,
        size: u8,
        write: bool,
        value: u64,
    },
}

impl Access {
    pub fn is_read(&self) -> bool {
        match *self {
            Access::Pio { write, .. } | Access::Mmio { write, .. } => !write,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// `vcpu` has no slot (at most 16 vCPUs take I/O exits).
    NoSlot,
    /// The slot is not FREE: the Service VM still holds the previous request.
    Busy,
}

/// The bits an access of `size` bytes carries.
pub fn mask(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

/// Sets every slot of the page at `page` (Service VM GPA) FREE (set-buffer and VM reset).
pub fn reset_page(mem: &mut impl GuestMemory, page: u64) {
    let at = offset_of!(IoRequest, processed) as u64;
    for i in 0..ACRN_IO_REQUEST_MAX as u64 {
        mem.write(
            page + i * size_of::<IoRequest>() as u64 + at,
            &ACRN_IOREQ_STATE_FREE.to_le_bytes(),
        );
    }
}

/// Address of `vcpu`'s slot in the request page at `page_hva`.
pub fn slot_ptr(page_hva: u64, vcpu: usize) -> Option<*mut IoRequest> {
    (vcpu < ACRN_IO_REQUEST_MAX)
        .then(|| (page_hva + (vcpu * size_of::<IoRequest>()) as u64) as *mut IoRequest)
}

/// Posts `a` in `slot` and marks it PENDING.
///
/// # Safety
/// `slot` points to a live, 256-byte aligned [`IoRequest`] (shared with the Service VM, which
/// may write it concurrently; only `processed` is accessed atomically).
pub unsafe fn post(slot: *mut IoRequest, a: &Access, polling: bool) -> Result<(), PostError> {
    // SAFETY: per the contract; `processed` is an AtomicU32 inside the slot.
    let state = unsafe { (*addr_of!((*slot).processed)).load(Ordering::Acquire) };
    if state != ACRN_IOREQ_STATE_FREE {
        return Err(PostError::Busy);
    }
    let dir = |w: bool| {
        if w {
            ACRN_IOREQ_DIR_WRITE
        } else {
            ACRN_IOREQ_DIR_READ
        }
    };
    // SAFETY (all writes below): per the contract; plain fields are written volatile (shared
    // memory), the payload field by field so the rest of the cleared union stays zero.
    unsafe {
        addr_of_mut!((*slot).reqs).write_volatile(IoRequestPayload { data: [0; 8] });
        match *a {
            Access::Pio {
                port,
                size,
                write,
                value,
            } => {
                addr_of_mut!((*slot).r#type).write_volatile(ACRN_IOREQ_TYPE_PORTIO);
                addr_of_mut!((*slot).reqs.pio_request).write_volatile(PioRequest {
                    direction: dir(write),
                    reserved: 0,
                    address: port as u64,
                    size: size as u64,
                    value: if write { value & mask(size) as u32 } else { 0 },
                });
            }
            Access::Mmio {
                gpa,
                size,
                write,
                value,
            } => {
                addr_of_mut!((*slot).r#type).write_volatile(ACRN_IOREQ_TYPE_MMIO);
                addr_of_mut!((*slot).reqs.mmio_request).write_volatile(MmioRequest {
                    direction: dir(write),
                    reserved: 0,
                    address: gpa,
                    size: size as u64,
                    value: if write { value & mask(size) } else { 0 },
                });
            }
        }
        addr_of_mut!((*slot).completion_polling).write_volatile(polling as u32);
        addr_of_mut!((*slot).kernel_handled).write_volatile(0);
        fence(Ordering::Release);
        (*addr_of!((*slot).processed)).store(IoReqState::Pending as u32, Ordering::Release);
    }
    Ok(())
}

/// If the Service VM completed the request in `slot`, returns its value (the low `size` bytes
/// matter; for writes it is meaningless) and frees the slot.
///
/// # Safety
/// As for [`post`]; `a` is the access posted in this slot.
pub unsafe fn take_completion(slot: *mut IoRequest, a: &Access) -> Option<u64> {
    // SAFETY: per the contract.
    let done = unsafe { (*addr_of!((*slot).processed)).load(Ordering::Acquire) }
        == IoReqState::Complete as u32;
    if !done {
        return None;
    }
    // SAFETY: per the contract; the union is plain integers, any bits are valid.
    let value = unsafe {
        let p = addr_of!((*slot).reqs).read_volatile();
        match a {
            Access::Pio { size, .. } => p.pio_request.value as u64 & mask(*size),
            Access::Mmio { size, .. } => p.mmio_request.value & mask(*size),
        }
    };
    // SAFETY: per the contract.
    unsafe { (*addr_of!((*slot).processed)).store(ACRN_IOREQ_STATE_FREE, Ordering::Release) };
    Some(value)
}

/// RAX after an IN of `size` bytes returned `value`: AL and AX keep the other bytes, EAX
/// zero-extends (as every 32-bit register write does in 64-bit mode).
pub fn merge_pio_read(rax: u64, size: u8, value: u64) -> u64 {
    match size {
        1 | 2 => (rax & !mask(size)) | (value & mask(size)),
        _ => value & mask(4),
    }
}

/// The request for the MMIO instruction `op` touching `gpa`; `None` for instructions we do not
/// forward (the VM layer then stops the VM).
pub fn mmio_access(op: Op, regs: &GuestRegs, gpa: u64) -> Option<Access> {
    match op {
        Op::StoreReg {
            size,
            reg,
            high_byte,
        } => {
            let v = regs.operand(reg, high_byte)?;
            Some(Access::Mmio {
                gpa,
                size,
                write: true,
                value: v & mask(size),
            })
        }
        Op::StoreImm { size, imm } => Some(Access::Mmio {
            gpa,
            size,
            write: true,
            value: imm & mask(size),
        }),
        Op::Load {
            size,
            reg,
            high_byte,
            ..
        } => {
            regs.operand(reg, high_byte)?; // the destination must be a register we hold
            Some(Access::Mmio {
                gpa,
                size,
                write: false,
                value: 0,
            })
        }
        _ => None,
    }
}

/// Writes the `value` an MMIO read returned into the destination of `op`, with x86's rules:
/// 32-bit destinations zero-extend, 8/16-bit ones merge, MOVZX zero-extends to its size.
pub fn complete_mmio_read(op: Op, regs: &mut GuestRegs, value: u64) -> bool {
    let Op::Load {
        size,
        reg,
        high_byte,
        zero_extend_to,
    } = op
    else {
        return false;
    };
    let v = value & mask(size);
    if high_byte {
        let Some(d) = reg.checked_sub(4).and_then(|n| regs.gpr_mut(n)) else {
            return false;
        };
        *d = (*d & !0xFF00) | (v & 0xFF) << 8;
        return true;
    }
    let Some(d) = regs.gpr_mut(reg) else {
        return false;
    };
    let dest = zero_extend_to.unwrap_or(size);
    *d = match dest {
        4 | 8 => v,
        _ => (*d & !mask(dest)) | v,
    };
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypercall::mem::testing::ram;
    use acrn_abi::ioreq::{ACRN_IOREQ_STATE_COMPLETE, ACRN_IOREQ_STATE_PENDING};
    use acrn_abi::IoRequestBuffer;

    fn page() -> Box<IoRequestBuffer> {
        Box::new(IoRequestBuffer::new())
    }

    #[test]
    fn pio_read_round_trip() {
        let mut p = page();
        let slot = &mut p.req_slot[3] as *mut IoRequest;
        let a = Access::Pio {
            port: 0x3F8,
            size: 1,
            write: false,
            value: 0xdead,
        };
        unsafe { post(slot, &a, false).unwrap() };
        let s = &p.req_slot[3];
        assert_eq!(
            s.processed.load(Ordering::Relaxed),
            ACRN_IOREQ_STATE_PENDING
        );
        assert_eq!(s.r#type, ACRN_IOREQ_TYPE_PORTIO);
        let pio = unsafe { s.reqs.pio_request };
        assert_eq!(
            (pio.direction, pio.address, pio.size, pio.value),
            (ACRN_IOREQ_DIR_READ, 0x3F8, 1, 0)
        );
        // A second request on the same slot while the Service VM holds it is refused.
        assert_eq!(unsafe { post(slot, &a, false) }, Err(PostError::Busy));
        // Not complete yet (PENDING, then PROCESSING).
        assert_eq!(unsafe { take_completion(slot, &a) }, None);
        p.req_slot[3].processed.store(2, Ordering::Relaxed);
        assert_eq!(unsafe { take_completion(slot, &a) }, None);
        // The Service VM answers with junk in the upper bytes: only `size` bytes count.
        p.req_slot[3].reqs.pio_request.value = 0x1234_5641;
        p.req_slot[3]
            .processed
            .store(ACRN_IOREQ_STATE_COMPLETE, Ordering::Release);
        let slot = &mut p.req_slot[3] as *mut IoRequest;
        assert_eq!(unsafe { take_completion(slot, &a) }, Some(0x41));
        assert_eq!(
            p.req_slot[3].processed.load(Ordering::Relaxed),
            ACRN_IOREQ_STATE_FREE
        );
        assert_eq!(
            merge_pio_read(0xFFFF_FFFF_FFFF_FF00, 1, 0x41),
            0xFFFF_FFFF_FFFF_FF41
        );
        assert_eq!(
            merge_pio_read(0x1111_2222_3333_4444, 2, 0xABCD),
            0x1111_2222_3333_ABCD
        );
        // Fuzzing found (ioreq target, fuzz/regressions/ioreq/in-eax-keeps-upper-half): IN EAX
        // kept RAX's upper half; the CPU zero-extends a 32-bit register write.
        assert_eq!(
            merge_pio_read(0x1111_2222_3333_4444, 4, 0xABCD_EF01),
            0xABCD_EF01
        );
    }

    #[test]
    fn mmio_write_masks_value_and_clears_stale_payload() {
        let mut p = page();
        p.req_slot[0].reqs.data = [u64::MAX; 8];
        let slot = &mut p.req_slot[0] as *mut IoRequest;
        let a = Access::Mmio {
            gpa: 0xFED0_0010,
            size: 2,
            write: true,
            value: 0x1234_5678,
        };
        unsafe { post(slot, &a, true).unwrap() };
        let s = &p.req_slot[0];
        let m = unsafe { s.reqs.mmio_request };
        assert_eq!((s.r#type, s.completion_polling), (ACRN_IOREQ_TYPE_MMIO, 1));
        assert_eq!(
            (m.direction, m.address, m.size, m.value),
            (ACRN_IOREQ_DIR_WRITE, 0xFED0_0010, 2, 0x5678)
        );
        assert_eq!(unsafe { s.reqs.data }[4..], [0; 4]);
    }

    #[test]
    fn only_sixteen_slots() {
        assert!(slot_ptr(0x1000, 15).is_some());
        assert!(slot_ptr(0x1000, 16).is_none());
        assert_eq!(slot_ptr(0x1000, 1), Some(0x1100 as *mut IoRequest));
    }

    #[test]
    fn reset_page_frees_all_slots() {
        let ranges = [(0x10_0000u64, 0x1000u64)];
        let mut m = ram(&ranges, 0x10_0000, 0x1000);
        reset_page(&mut m, 0x10_0000);
        for i in 0..16 {
            let off = i * 256 + 136;
            assert_eq!(&m.phys.bytes[off..off + 4], &3u32.to_le_bytes());
        }
    }

    #[test]
    fn mmio_decode_and_complete() {
        let mut r = GuestRegs {
            rax: 0xAAAA_BBBB_CCCC_DDDD,
            rbx: 0x1122_3344_5566_7788,
            ..Default::default()
        };
        // mov [m], bh  (reg 7 with high_byte = BH)
        let a = mmio_access(
            Op::StoreReg {
                size: 1,
                reg: 7,
                high_byte: true,
            },
            &r,
            0x100,
        )
        .unwrap();
        assert_eq!(
            a,
            Access::Mmio {
                gpa: 0x100,
                size: 1,
                write: true,
                value: 0x77
            }
        );
        assert_eq!(
            mmio_access(
                Op::StoreImm {
                    size: 4,
                    imm: 0x1_2345_6789
                },
                &r,
                8
            ),
            Some(Access::Mmio {
                gpa: 8,
                size: 4,
                write: true,
                value: 0x2345_6789
            })
        );
        // RSP operands and non-MOV instructions are not forwarded.
        assert_eq!(
            mmio_access(
                Op::StoreReg {
                    size: 8,
                    reg: 4,
                    high_byte: false
                },
                &r,
                0
            ),
            None
        );
        assert_eq!(mmio_access(Op::Cpuid, &r, 0), None);
        // 32-bit load zero-extends.
        let ld = Op::Load {
            size: 4,
            reg: 0,
            high_byte: false,
            zero_extend_to: None,
        };
        assert!(mmio_access(ld, &r, 0).unwrap().is_read());
        assert!(complete_mmio_read(ld, &mut r, 0xFFFF_1234_5678_9ABC));
        assert_eq!(r.rax, 0x5678_9ABC);
        // 16-bit load merges.
        r.rbx = 0x1122_3344_5566_7788;
        assert!(complete_mmio_read(
            Op::Load {
                size: 2,
                reg: 3,
                high_byte: false,
                zero_extend_to: None
            },
            &mut r,
            0xBEEF
        ));
        assert_eq!(r.rbx, 0x1122_3344_5566_BEEF);
        // movzx ecx, byte [m]
        r.rcx = u64::MAX;
        assert!(complete_mmio_read(
            Op::Load {
                size: 1,
                reg: 1,
                high_byte: false,
                zero_extend_to: Some(4)
            },
            &mut r,
            0x1FF
        ));
        assert_eq!(r.rcx, 0xFF);
        // mov ah, [m]
        r.rax = 0x1111;
        assert!(complete_mmio_read(
            Op::Load {
                size: 1,
                reg: 4,
                high_byte: true,
                zero_extend_to: None
            },
            &mut r,
            0x42
        ));
        assert_eq!(r.rax, 0x4211);
        assert!(!complete_mmio_read(
            Op::StoreImm { size: 1, imm: 0 },
            &mut r,
            0
        ));
    }
}
