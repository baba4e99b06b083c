//! The I/O request page: the hypervisor posts requests and collects completions while the
//! Service VM moves slots through their states and scribbles anywhere in the page. What must
//! hold: a slot pointer is always inside the page; a post touches only its own slot, only when
//! that slot is FREE (else nothing changes), and leaves exactly the request in it (type,
//! direction, address, size, value masked to the size) marked PENDING; a completion is
//! reported only for a slot the Service VM marked COMPLETE, with at most `size` bytes of value,
//! and frees the slot, so the same completion is never reported twice; reset frees every
//! slot and changes nothing else. The register merges after a read follow x86: 8- and 16-bit
//! destinations keep the other bits, 32-bit ones zero-extend.
#![no_main]

use core::mem::{offset_of, size_of};

use acrn_abi::ioreq::{
    ACRN_IOREQ_DIR_READ, ACRN_IOREQ_DIR_WRITE, ACRN_IOREQ_STATE_COMPLETE, ACRN_IOREQ_STATE_FREE,
    ACRN_IOREQ_STATE_PENDING, ACRN_IOREQ_STATE_PROCESSING, ACRN_IOREQ_TYPE_MMIO,
    ACRN_IOREQ_TYPE_PORTIO, ACRN_IO_REQUEST_MAX,
};
use acrn_abi::{IoRequest, IoRequestBuffer, MmioRequest};
use acrn_hypervisor::{
    hypercall::GuestMemory,
    ioreq::{
        complete_mmio_read, merge_pio_read, mmio_access, post, reset_page, slot_ptr,
        take_completion, Access, PostError,
    },
    vcpu::decode::Op,
    vcpu::GuestRegs,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const SLOT: usize = size_of::<IoRequest>();
const PROCESSED: usize = offset_of!(IoRequest, processed);
const PAYLOAD: usize = offset_of!(IoRequest, reqs);
/// Offset of the value inside the payload (the same for port I/O and MMIO).
const VALUE: usize = PAYLOAD + offset_of!(MmioRequest, value);
/// The page's Service VM GPA for `reset_page`.
const PAGE_GPA: u64 = 0x7000;

#[derive(Debug, Arbitrary)]
enum Action {
    /// The hypervisor forwards an access of vCPU `vcpu`.
    Post {
        vcpu: u8,
        mmio: bool,
        addr: u64,
        size: u8,
        write: bool,
        value: u64,
        polling: bool,
    },
    /// The Service VM sets a slot's state (the last value written for it first).
    Service { vcpu: u8, state: u8, value: u64 },
    /// The Service VM writes anything anywhere in the page.
    Scribble { offset: u16, bytes: Vec<u8> },
    /// The hypervisor polls vCPU `vcpu`'s outstanding request.
    Poll { vcpu: u8 },
    /// HC_RESET_VM / HC_SET_IOREQ_BUFFER.
    Reset,
    /// The register merges after a completed read.
    Merge {
        rax: u64,
        size: u8,
        value: u64,
        op: (u8, u8, bool, u8),
        regs: [u64; 15],
    },
}

/// The page as raw memory shared with the "Service VM" (this harness).
struct Page(*mut IoRequestBuffer);

impl Page {
    // The page is shared memory written behind the hypervisor code's back, as the Service VM
    // does: a mutable view from a shared handle is what is being modelled.
    #[allow(clippy::mut_from_ref)]
    fn bytes(&self) -> &mut [u8] {
        // SAFETY: the page is a live 4 KiB allocation owned by this harness; IoRequestBuffer
        // is plain integers, any bytes are valid.
        unsafe { core::slice::from_raw_parts_mut(self.0 as *mut u8, size_of::<IoRequestBuffer>()) }
    }
    fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes()[off..off + 4].try_into().unwrap())
    }
    fn u64_at(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.bytes()[off..off + 8].try_into().unwrap())
    }
}

impl GuestMemory for Page {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        if !self.contains(gpa, buf.len() as u64) {
            return false;
        }
        let o = (gpa - PAGE_GPA) as usize;
        buf.copy_from_slice(&self.bytes()[o..o + buf.len()]);
        true
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if !self.contains(gpa, data.len() as u64) {
            return false;
        }
        let o = (gpa - PAGE_GPA) as usize;
        self.bytes()[o..o + data.len()].copy_from_slice(data);
        true
    }
    fn contains(&self, gpa: u64, len: u64) -> bool {
        gpa >= PAGE_GPA && gpa.checked_add(len).is_some_and(|e| e <= PAGE_GPA + 4096)
    }
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xFF,
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

fuzz_target!(|actions: Vec<Action>| {
    let page = Page(Box::into_raw(Box::new(IoRequestBuffer::new())));
    let base = page.0 as u64;
    // What the hypervisor has posted and not yet collected, per vCPU.
    let mut outstanding: [Option<Access>; ACRN_IO_REQUEST_MAX] = [None; ACRN_IO_REQUEST_MAX];
    for action in actions.iter().take(256) {
        run(&page, base, &mut outstanding, action);
    }
    // SAFETY: allocated above with Box::into_raw; no reference to it is left.
    drop(unsafe { Box::from_raw(page.0) });
});

fn run(page: &Page, base: u64, outstanding: &mut [Option<Access>], action: &Action) {
    match *action {
        Action::Post {
            vcpu,
            mmio,
            addr,
            size,
            write,
            value,
            polling,
        } => {
            let vcpu = vcpu as usize % 20;
            let Some(slot) = slot_ptr(base, vcpu) else {
                assert!(vcpu >= ACRN_IO_REQUEST_MAX, "no slot for vCPU {vcpu}");
                return;
            };
            assert!(vcpu < ACRN_IO_REQUEST_MAX);
            let off = (slot as u64).wrapping_sub(base) as usize;
            assert!(
                off.is_multiple_of(256) && off + SLOT <= 4096,
                "slot at page offset {off:#x}"
            );
            let a = if mmio {
                Access::Mmio {
                    gpa: addr,
                    size: [1, 2, 4, 8][size as usize % 4],
                    write,
                    value,
                }
            } else {
                Access::Pio {
                    port: addr as u16,
                    size: [1, 2, 4][size as usize % 3],
                    write,
                    value: value as u32,
                }
            };
            let before = page.bytes().to_vec();
            let was_free = page.u32_at(off + PROCESSED) == ACRN_IOREQ_STATE_FREE;
            // SAFETY: `slot` is inside the live page (checked above), 256-byte aligned.
            let r = unsafe { post(slot, &a, polling) };
            if !was_free {
                assert_eq!(r, Err(PostError::Busy));
                assert!(
                    page.bytes() == before.as_slice(),
                    "a refused post wrote the page"
                );
                return;
            }
            assert_eq!(r, Ok(()));
            let after = page.bytes();
            for (i, (x, y)) in before.iter().zip(after.iter()).enumerate() {
                assert!(
                    x == y || (off..off + SLOT).contains(&i),
                    "post wrote byte {i:#x}"
                );
            }
            assert_eq!(page.u32_at(off + PROCESSED), ACRN_IOREQ_STATE_PENDING);
            let (ty, size, addr, value) = match a {
                Access::Pio {
                    port,
                    size,
                    write,
                    value,
                } => (
                    ACRN_IOREQ_TYPE_PORTIO,
                    size,
                    u64::from(port),
                    if write {
                        u64::from(value) & mask(size)
                    } else {
                        0
                    },
                ),
                Access::Mmio {
                    gpa,
                    size,
                    write,
                    value,
                } => (
                    ACRN_IOREQ_TYPE_MMIO,
                    size,
                    gpa,
                    if write { value & mask(size) } else { 0 },
                ),
            };
            let field = |o: usize| page.u64_at(off + PAYLOAD + o);
            assert_eq!(page.u32_at(off), ty);
            assert_eq!(
                page.u32_at(off + offset_of!(IoRequest, completion_polling)),
                polling as u32
            );
            let dir = if a.is_read() {
                ACRN_IOREQ_DIR_READ
            } else {
                ACRN_IOREQ_DIR_WRITE
            };
            assert_eq!(page.u32_at(off + PAYLOAD), dir);
            assert_eq!(field(offset_of!(MmioRequest, address)), addr);
            assert_eq!(field(offset_of!(MmioRequest, size)), u64::from(size));
            let got = if ty == ACRN_IOREQ_TYPE_PORTIO {
                u64::from(page.u32_at(off + VALUE))
            } else {
                page.u64_at(off + VALUE)
            };
            assert_eq!(got, value, "posted value");
            outstanding[vcpu] = Some(a);
        }
        Action::Service { vcpu, state, value } => {
            let off = (vcpu as usize % ACRN_IO_REQUEST_MAX) * SLOT;
            let state = match state % 5 {
                0 => ACRN_IOREQ_STATE_PENDING,
                1 => ACRN_IOREQ_STATE_PROCESSING,
                2 | 3 => ACRN_IOREQ_STATE_COMPLETE,
                _ => u32::from(state),
            };
            page.bytes()[off + VALUE..off + VALUE + 8].copy_from_slice(&value.to_le_bytes());
            page.bytes()[off + PROCESSED..off + PROCESSED + 4]
                .copy_from_slice(&state.to_le_bytes());
        }
        Action::Scribble { offset, ref bytes } => {
            let start = offset as usize % 4096;
            for (d, s) in page.bytes()[start..].iter_mut().zip(bytes) {
                *d = *s;
            }
        }
        Action::Poll { vcpu } => {
            let vcpu = vcpu as usize % ACRN_IO_REQUEST_MAX;
            let Some(a) = outstanding[vcpu] else {
                return;
            };
            let off = vcpu * SLOT;
            let complete = page.u32_at(off + PROCESSED) == ACRN_IOREQ_STATE_COMPLETE;
            let raw = page.u64_at(off + VALUE);
            let slot = slot_ptr(base, vcpu).expect("a slot");
            // SAFETY: as for post; `a` is what was posted in this slot.
            let got = unsafe { take_completion(slot, &a) };
            if !complete {
                assert_eq!(got, None, "completion of a slot that is not COMPLETE");
                return;
            }
            let size = match a {
                Access::Pio { size, .. } | Access::Mmio { size, .. } => size,
            };
            let width = if matches!(a, Access::Pio { .. }) {
                4
            } else {
                8
            };
            assert_eq!(got, Some(raw & mask(size) & mask(width)), "completed value");
            assert_eq!(page.u32_at(off + PROCESSED), ACRN_IOREQ_STATE_FREE);
            // SAFETY: as above.
            assert_eq!(
                unsafe { take_completion(slot, &a) },
                None,
                "completed twice"
            );
            outstanding[vcpu] = None;
        }
        Action::Reset => {
            let before = page.bytes().to_vec();
            let mut mem = Page(page.0);
            reset_page(&mut mem, PAGE_GPA);
            for (i, (x, y)) in before.iter().zip(page.bytes().iter()).enumerate() {
                let in_state = (i % SLOT) >= PROCESSED && (i % SLOT) < PROCESSED + 4;
                assert!(x == y || in_state, "reset wrote byte {i:#x}");
            }
            for v in 0..ACRN_IO_REQUEST_MAX {
                assert_eq!(page.u32_at(v * SLOT + PROCESSED), ACRN_IOREQ_STATE_FREE);
            }
            outstanding.iter_mut().for_each(|o| *o = None);
        }
        Action::Merge {
            rax,
            size,
            value,
            op,
            regs,
        } => check_merges(rax, size, value, op, regs),
    }
}

fn check_merges(rax: u64, size: u8, value: u64, op: (u8, u8, bool, u8), r: [u64; 15]) {
    let size = [1u8, 2, 4][size as usize % 3];
    let want = match size {
        4 => value & 0xFFFF_FFFF,
        _ => (rax & !mask(size)) | (value & mask(size)),
    };
    assert_eq!(merge_pio_read(rax, size, value), want, "IN of {size} bytes");

    let mut regs = GuestRegs {
        rax: r[0],
        rcx: r[1],
        rdx: r[2],
        rbx: r[3],
        rbp: r[5],
        rsi: r[6],
        rdi: r[7],
        r8: r[8],
        r9: r[9],
        r10: r[10],
        r11: r[11],
        r12: r[12],
        r13: r[13],
        r14: r[14],
        r15: r[4],
    };
    let (kind, reg, high_byte, sz) = op;
    let size = [1u8, 2, 4, 8][sz as usize % 4];
    let reg = reg % 16;
    let high_byte = high_byte && size == 1 && (4..8).contains(&reg);
    let zero_extend_to = match kind % 4 {
        0 if size < 4 => Some([2u8, 4, 8][(reg as usize) % 3].max(size * 2)),
        _ => None,
    };
    let op = match kind % 3 {
        0 => Op::Load {
            size,
            reg,
            high_byte,
            zero_extend_to,
        },
        1 => Op::StoreReg {
            size,
            reg,
            high_byte,
        },
        _ => Op::StoreImm { size, imm: value },
    };
    let gpa = rax;
    match (op, mmio_access(op, &regs, gpa)) {
        (
            _,
            Some(Access::Mmio {
                gpa: g,
                size: s,
                write,
                value: v,
            }),
        ) => {
            assert_eq!((g, s), (gpa, size));
            assert_eq!(v & !mask(size), 0, "value wider than the access");
            assert_eq!(write, !matches!(op, Op::Load { .. }));
        }
        (_, Some(a)) => panic!("MMIO became {a:?}"),
        (Op::StoreImm { .. }, None) => panic!("a store of an immediate was not forwarded"),
        // RSP (4) is not in GuestRegs: such accesses are refused.
        (_, None) => assert!(reg == 4 && !high_byte, "{op:?} refused"),
    }
    let before = regs;
    let read = value;
    if complete_mmio_read(op, &mut regs, read) {
        let Op::Load { .. } = op else {
            panic!("{op:?} completed as a read")
        };
        let n = if high_byte { reg - 4 } else { reg };
        let old = before.gpr(n).expect("register");
        let new = regs.gpr(n).expect("register");
        let v = read & mask(size);
        let want = if high_byte {
            (old & !0xFF00) | (v & 0xFF) << 8
        } else {
            match zero_extend_to.unwrap_or(size) {
                4 | 8 => v,
                d => (old & !mask(d)) | v,
            }
        };
        assert_eq!(new, want, "{op:?} of {read:#x} into {old:#x}");
        for other in (0..16u8).filter(|&x| x != n && x != 4) {
            assert_eq!(
                before.gpr(other),
                regs.gpr(other),
                "register {other} changed"
            );
        }
    } else {
        assert!(
            !matches!(op, Op::Load { .. }) || (reg == 4 && !high_byte),
            "{op:?} not completed"
        );
    }
}
