//! String port I/O (INS/OUTS, with or without REP) emulated against guest memory: each element
//! moves between a port handler and the guest's linear address space, and RSI/RDI/RCX advance
//! as the CPU would advance them. A long REP is split: after [`MAX_ITERATIONS`] elements the
//! instruction is left to run again, so interrupts are taken between chunks as on hardware.

use crate::vcpu::decode::CpuMode;
use crate::vcpu::{GuestRegs, IoDirection};

/// Segment registers in encoding order (ES=0 ... GS=5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegReg {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// Elements moved per exit before the instruction is re-executed.
pub const MAX_ITERATIONS: u64 = 1024;

/// What the prefixes of an INS/OUTS instruction select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefixes {
    /// Address size in bytes: 2, 4 or 8.
    pub addr_size: u8,
    /// The memory segment: ES for INS (not overridable), DS or the override for OUTS.
    pub seg: SegReg,
}

/// Scans the legacy (and, in 64-bit mode, REX) prefixes of the INS/OUTS instruction in `bytes`.
/// None if the bytes are not a string I/O instruction.
pub fn scan_prefixes(bytes: &[u8], mode: CpuMode) -> Option<Prefixes> {
    let mut addr_size = match mode {
        CpuMode::Long64 => 8,
        CpuMode::Prot32 => 4,
        CpuMode::Real16 | CpuMode::Prot16 => 2,
    };
    let mut seg = None;
    for &b in bytes.iter().take(15) {
        match b {
            0x67 => {
                addr_size = match mode {
                    CpuMode::Long64 => 4,
                    CpuMode::Prot32 => 2,
                    _ => 4,
                }
            }
            0x26 => seg = Some(SegReg::Es),
            0x2E => seg = Some(SegReg::Cs),
            0x36 => seg = Some(SegReg::Ss),
            0x3E => seg = Some(SegReg::Ds),
            0x64 => seg = Some(SegReg::Fs),
            0x65 => seg = Some(SegReg::Gs),
            0x66 | 0xF0 | 0xF2 | 0xF3 => {}
            0x40..=0x4F if mode == CpuMode::Long64 => {}
            0x6C | 0x6D => {
                return Some(Prefixes {
                    addr_size,
                    seg: SegReg::Es,
                })
            }
            0x6E | 0x6F => {
                return Some(Prefixes {
                    addr_size,
                    seg: seg.unwrap_or(SegReg::Ds),
                })
            }
            _ => return None,
        }
    }
    None
}

/// Guest memory by linear address (the caller walks the guest's page tables).
pub trait LinearMem {
    fn read(&self, la: u64, buf: &mut [u8]) -> bool;
    fn write(&mut self, la: u64, data: &[u8]) -> bool;
}

/// One string I/O instruction as the exit and its prefixes describe it.
#[derive(Debug, Clone, Copy)]
pub struct StringOp {
    pub size: u8,
    pub dir: IoDirection,
    pub rep: bool,
    pub addr_size: u8,
    pub seg_base: u64,
    /// RFLAGS.DF: addresses decrement.
    pub df: bool,
    /// Linear addresses are 64-bit (long mode); else they wrap at 4 GiB.
    pub long_mode: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The instruction is complete: advance RIP past it.
    Done,
    /// REP elements remain: leave RIP so the instruction runs again.
    Again,
}

/// The guest linear address an element could not be read from or written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub la: u64,
}

/// Replaces the low `addr_size` bytes of `reg` as the CPU does: a 32-bit result zero-extends,
/// a 16-bit one keeps the upper bits.
fn set_masked(reg: &mut u64, value: u64, addr_size: u8) {
    *reg = match addr_size {
        2 => (*reg & !0xFFFF) | (value & 0xFFFF),
        4 => value & 0xFFFF_FFFF,
        _ => value,
    };
}

fn mask(addr_size: u8) -> u64 {
    match addr_size {
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    }
}

/// Runs `op`: `port(In, _)` returns the element read from the port, `port(Out, v)` writes `v`.
/// Registers advance per element, so they are consistent even when an element faults.
pub fn execute(
    op: &StringOp,
    regs: &mut GuestRegs,
    mem: &mut impl LinearMem,
    mut port: impl FnMut(IoDirection, u32) -> u32,
) -> Result<Outcome, Fault> {
    let m = mask(op.addr_size);
    let size = op.size.clamp(1, 4) as usize;
    let step = if op.df {
        (size as u64).wrapping_neg()
    } else {
        size as u64
    };
    let mut left = if op.rep { regs.rcx & m } else { 1 };
    let mut done = 0;
    while left > 0 {
        if done == MAX_ITERATIONS {
            return Ok(Outcome::Again);
        }
        let index = match op.dir {
            IoDirection::Out => &mut regs.rsi,
            IoDirection::In => &mut regs.rdi,
        };
        let mut la = op.seg_base.wrapping_add(*index & m);
        if !op.long_mode {
            la &= 0xFFFF_FFFF;
        }
        let mut buf = [0u8; 4];
        match op.dir {
            IoDirection::Out => {
                if !mem.read(la, &mut buf[..size]) {
                    return Err(Fault { la });
                }
                port(IoDirection::Out, u32::from_le_bytes(buf));
            }
            IoDirection::In => {
                buf = port(IoDirection::In, 0).to_le_bytes();
                if !mem.write(la, &buf[..size]) {
                    return Err(Fault { la });
                }
            }
        }
        let next = index.wrapping_add(step);
        set_masked(index, next, op.addr_size);
        left -= 1;
        done += 1;
        if op.rep {
            set_masked(&mut regs.rcx, left, op.addr_size);
        }
    }
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem {
        base: u64,
        bytes: Vec<u8>,
    }
    impl LinearMem for Mem {
        fn read(&self, la: u64, buf: &mut [u8]) -> bool {
            let Some(o) = la.checked_sub(self.base) else {
                return false;
            };
            match self.bytes.get(o as usize..o as usize + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
        fn write(&mut self, la: u64, data: &[u8]) -> bool {
            let Some(o) = la.checked_sub(self.base) else {
                return false;
            };
            match self.bytes.get_mut(o as usize..o as usize + data.len()) {
                Some(s) => {
                    s.copy_from_slice(data);
                    true
                }
                None => false,
            }
        }
    }

    fn op(dir: IoDirection, size: u8, rep: bool) -> StringOp {
        StringOp {
            size,
            dir,
            rep,
            addr_size: 8,
            seg_base: 0,
            df: false,
            long_mode: true,
        }
    }

    #[test]
    fn prefixes() {
        use CpuMode::*;
        let p = |b: &[u8], m| scan_prefixes(b, m);
        // rep outsb (64-bit): DS, 64-bit addresses.
        assert_eq!(
            p(&[0xF3, 0x6E], Long64),
            Some(Prefixes {
                addr_size: 8,
                seg: SegReg::Ds
            })
        );
        // addr32 fs rep outsw.
        assert_eq!(
            p(&[0x67, 0x64, 0x66, 0xF3, 0x6F], Long64),
            Some(Prefixes {
                addr_size: 4,
                seg: SegReg::Fs
            })
        );
        // An override does not apply to INS (always ES).
        assert_eq!(
            p(&[0x2E, 0x6C], Real16),
            Some(Prefixes {
                addr_size: 2,
                seg: SegReg::Es
            })
        );
        assert_eq!(p(&[0x67, 0x6D], Prot32).unwrap().addr_size, 2);
        // REX only counts in 64-bit mode (0x48 is DEC EAX elsewhere).
        assert!(p(&[0x48, 0x6E], Long64).is_some());
        assert_eq!(p(&[0x48, 0x6E], Prot32), None);
        assert_eq!(p(&[0xEE], Long64), None);
        assert_eq!(p(&[0xF3; 20], Long64), None);
        assert_eq!(p(&[], Long64), None);
    }

    #[test]
    fn rep_outsb_sends_the_buffer_and_advances() {
        let mut mem = Mem {
            base: 0x1000,
            bytes: b"hello".to_vec(),
        };
        let mut regs = GuestRegs {
            rsi: 0x1000,
            rcx: 5,
            ..Default::default()
        };
        let mut out = Vec::new();
        let r = execute(
            &op(IoDirection::Out, 1, true),
            &mut regs,
            &mut mem,
            |d, v| {
                assert_eq!(d, IoDirection::Out);
                out.push(v as u8);
                0
            },
        );
        assert_eq!(r, Ok(Outcome::Done));
        assert_eq!(out, b"hello");
        assert_eq!((regs.rsi, regs.rcx), (0x1005, 0));
    }

    #[test]
    fn rep_insw_backwards_fills_memory() {
        let mut mem = Mem {
            base: 0,
            bytes: vec![0; 8],
        };
        let mut regs = GuestRegs {
            rdi: 6,
            rcx: 3,
            ..Default::default()
        };
        let mut next = 0x1111u32;
        let o = StringOp {
            df: true,
            ..op(IoDirection::In, 2, true)
        };
        let r = execute(&o, &mut regs, &mut mem, |_, _| {
            let v = next;
            next += 0x1111;
            v
        });
        assert_eq!(r, Ok(Outcome::Done));
        assert_eq!(mem.bytes, [0, 0, 0x33, 0x33, 0x22, 0x22, 0x11, 0x11]);
        assert_eq!((regs.rdi, regs.rcx), (0, 0));
    }

    #[test]
    fn long_rep_is_split_and_zero_count_does_nothing() {
        let mut mem = Mem {
            base: 0,
            bytes: vec![7; 4096],
        };
        let mut regs = GuestRegs {
            rcx: 3000,
            ..Default::default()
        };
        let mut n = 0;
        let o = op(IoDirection::Out, 1, true);
        assert_eq!(
            execute(&o, &mut regs, &mut mem, |_, _| {
                n += 1;
                0
            }),
            Ok(Outcome::Again)
        );
        assert_eq!((n, regs.rcx, regs.rsi), (1024, 3000 - 1024, 1024));
        regs.rcx = 0;
        assert_eq!(
            execute(&o, &mut regs, &mut mem, |_, _| panic!("no element")),
            Ok(Outcome::Done)
        );
    }

    #[test]
    fn address_size_wraps_and_faults_are_reported() {
        // 16-bit addressing: SI wraps inside the segment, the upper bits of RSI stay.
        let mut mem = Mem {
            base: 0x1_0000,
            bytes: vec![0xAB; 0x1_0000],
        };
        let mut regs = GuestRegs {
            rsi: 0xDEAD_0000_FFFF,
            ..Default::default()
        };
        let o = StringOp {
            addr_size: 2,
            seg_base: 0x1_0000,
            long_mode: false,
            ..op(IoDirection::Out, 1, false)
        };
        let mut got = 0;
        assert_eq!(
            execute(&o, &mut regs, &mut mem, |_, v| {
                got = v;
                0
            }),
            Ok(Outcome::Done)
        );
        assert_eq!((got, regs.rsi), (0xAB, 0xDEAD_0000_0000));
        // 32-bit addressing in long mode zero-extends RDI; an unmapped address is a fault and
        // leaves the registers unchanged.
        let mut regs = GuestRegs {
            rdi: 0xFFFF_FFFF_0000_0010,
            rcx: 2,
            ..Default::default()
        };
        let o = StringOp {
            addr_size: 4,
            ..op(IoDirection::In, 4, true)
        };
        assert_eq!(
            execute(&o, &mut regs, &mut mem, |_, _| 0),
            Err(Fault { la: 0x10 })
        );
        assert_eq!((regs.rdi, regs.rcx), (0xFFFF_FFFF_0000_0010, 2));
    }
}
