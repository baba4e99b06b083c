//! A small x86 instruction decoder for the instructions that cause exits: without NRIP save
//! (QEMU TCG) the hypervisor must find instruction lengths itself, and without decode assists it
//! must decode MMIO accesses itself. Covers prefixes (legacy and REX), ModRM/SIB/displacements in
//! 16-, 32- and 64-bit code.

use x86_64::registers::rflags::RFlags;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    Real16,
    Prot16,
    Prot32,
    Long64,
}

/// What an MMIO instruction does. Register numbers are 0-15 in the usual order (RAX=0 ... R15);
/// `high_byte` marks AH/CH/DH/BH (8-bit operand, register 4-7, no REX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    PortIo,
    Cpuid,
    Hlt,
    Vmmcall,
    Vmcall,
    Rdmsr,
    Wrmsr,
    /// `mov [mem], reg`.
    StoreReg {
        size: u8,
        reg: u8,
        high_byte: bool,
    },
    /// `mov [mem], imm`.
    StoreImm {
        size: u8,
        imm: u64,
    },
    /// `mov reg, [mem]`; `zero_extend_to` is Some(n) for MOVZX to an n-byte register.
    Load {
        size: u8,
        reg: u8,
        high_byte: bool,
        zero_extend_to: Option<u8>,
    },
    /// An arithmetic or logic instruction with a memory destination (`or dword [mem], imm`,
    /// `and [mem], reg`, `cmp`/`test` that only read): compilers fold volatile read-modify-write
    /// sequences on device registers into these.
    Alu {
        size: u8,
        kind: AluKind,
        src: AluSrc,
    },
    /// `bt [mem], imm8`: CF takes bit `bit % (size * 8)` of the memory operand.
    BitTest {
        size: u8,
        bit: u8,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluKind {
    Add,
    Or,
    And,
    Sub,
    Xor,
    /// Like `Sub`, but only the flags are written.
    Cmp,
    /// Like `And`, but only the flags are written.
    Test,
}

impl AluKind {
    /// Whether the instruction writes its result back to memory.
    pub const fn writes_back(self) -> bool {
        !matches!(self, AluKind::Cmp | AluKind::Test)
    }

    /// The group-1 operation selected by ModRM.reg (`/0` ADD ... `/7` CMP); ADC and SBB are not
    /// emulated because their result depends on the incoming carry.
    fn group1(reg: u8) -> Option<AluKind> {
        Some(match reg {
            0 => AluKind::Add,
            1 => AluKind::Or,
            4 => AluKind::And,
            5 => AluKind::Sub,
            6 => AluKind::Xor,
            7 => AluKind::Cmp,
            _ => return None,
        })
    }
}

/// The second operand of an [`Op::Alu`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AluSrc {
    /// Already sign-extended to the operand size.
    Imm(u64),
    /// Register numbering as in [`Op::StoreReg`] (AH..BH are 4..7 with `high_byte`).
    Reg { reg: u8, high_byte: bool },
}

/// RFLAGS bits an ALU instruction defines.
const FLAG_CF: u64 = RFlags::CARRY_FLAG.bits();
const FLAG_PF: u64 = RFlags::PARITY_FLAG.bits();
const FLAG_AF: u64 = RFlags::AUXILIARY_CARRY_FLAG.bits();
const FLAG_ZF: u64 = RFlags::ZERO_FLAG.bits();
const FLAG_SF: u64 = RFlags::SIGN_FLAG.bits();
const FLAG_OF: u64 = RFlags::OVERFLOW_FLAG.bits();
const ALU_FLAGS: u64 = FLAG_CF | FLAG_PF | FLAG_AF | FLAG_ZF | FLAG_SF | FLAG_OF;

/// RFLAGS after `bt` of `value` (an operand of `size` bytes) at `bit`: only CF changes.
pub fn bit_test(size: u8, value: u64, bit: u8, rflags: u64) -> u64 {
    let bit = u32::from(bit) % (u32::from(size.clamp(1, 8)) * 8);
    if value >> bit & 1 != 0 {
        rflags | FLAG_CF
    } else {
        rflags & !FLAG_CF
    }
}

/// Computes `dst <kind> src` at `size` bytes the way the CPU does: returns the result (masked to
/// the size) and `rflags` with CF, PF, AF, ZF, SF and OF updated.
pub fn alu(kind: AluKind, size: u8, dst: u64, src: u64, rflags: u64) -> (u64, u64) {
    let bits = u32::from(size.clamp(1, 8)) * 8;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let sign = 1u64 << (bits - 1);
    let (a, b) = (dst & mask, src & mask);
    let (result, carry, overflow, adjust) = match kind {
        AluKind::Add => {
            let r = a.wrapping_add(b) & mask;
            let carry = r < a;
            let overflow = (!(a ^ b) & (a ^ r)) & sign != 0;
            (r, carry, overflow, (a ^ b ^ r) & 0x10 != 0)
        }
        AluKind::Sub | AluKind::Cmp => {
            let r = a.wrapping_sub(b) & mask;
            let overflow = ((a ^ b) & (a ^ r)) & sign != 0;
            (r, a < b, overflow, (a ^ b ^ r) & 0x10 != 0)
        }
        AluKind::Or => (a | b, false, false, false),
        AluKind::And | AluKind::Test => (a & b, false, false, false),
        AluKind::Xor => (a ^ b, false, false, false),
    };
    let mut flags = rflags & !ALU_FLAGS;
    for (set, bit) in [
        (carry, FLAG_CF),
        ((result as u8).count_ones().is_multiple_of(2), FLAG_PF),
        (adjust, FLAG_AF),
        (result == 0, FLAG_ZF),
        (result & sign != 0, FLAG_SF),
        (overflow, FLAG_OF),
    ] {
        if set {
            flags |= bit;
        }
    }
    (result, flags)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub len: u8,
    pub op: Op,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does.
    Truncated,
    /// An instruction this decoder does not know.
    Unsupported {
        opcode: u8,
    },
    TooLong,
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}
impl Cursor<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        let v = *self.b.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        if self.pos > 15 {
            return Err(DecodeError::TooLong);
        }
        Ok(v)
    }
    fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        for _ in 0..n {
            self.next()?;
        }
        Ok(())
    }
    fn imm(&mut self, n: usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..n {
            v |= (self.next()? as u64) << (8 * i);
        }
        Ok(v)
    }
}

/// Decodes the instruction at the start of `bytes`.
/// The two hypercall instructions, both 3 bytes: Intel's `VMCALL` and AMD's `VMMCALL`. Each
/// raises #UD on the other vendor's CPUs; the hypervisor intercepts #UD and takes either as a
/// hypercall (Linux's ACRN guest code issues `vmcall` on every vendor).
pub const VMCALL: [u8; 3] = [0x0F, 0x01, 0xC1];
pub const VMMCALL: [u8; 3] = [0x0F, 0x01, 0xD9];

/// Whether the instruction bytes at a #UD are a hypercall instruction (without prefixes, as
/// guests issue them); its length is 3.
pub fn is_hypercall(bytes: &[u8]) -> bool {
    bytes.get(..3).is_some_and(|b| b == VMCALL || b == VMMCALL)
}

pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<Insn, DecodeError> {
    let mut c = Cursor { b: bytes, pos: 0 };
    let default32 = matches!(mode, CpuMode::Prot32 | CpuMode::Long64);
    let (mut opsize_override, mut addr_override, mut rex) = (false, false, 0u8);
    let mut op = c.next()?;
    loop {
        match op {
            0x66 => opsize_override = true,
            0x67 => addr_override = true,
            0xF0 | 0xF2 | 0xF3 | 0x26 | 0x2E | 0x36 | 0x3E | 0x64 | 0x65 => {}
            0x40..=0x4F if mode == CpuMode::Long64 => {
                rex = op;
                op = c.next()?;
                // A REX prefix must come last; a legacy prefix after it cancels it.
                if matches!(op, 0x26 | 0x2E | 0x36 | 0x3E | 0x40..=0x4F | 0x64..=0x67 | 0xF0 | 0xF2 | 0xF3)
                {
                    rex = 0;
                    continue;
                }
                break;
            }
            _ => break,
        }
        op = c.next()?;
    }
    let rex_w = rex & 8 != 0;
    let opsize: u8 = if rex_w {
        8
    } else if default32 != opsize_override {
        4
    } else {
        2
    };
    let addr16 = match mode {
        CpuMode::Long64 => false,
        _ => default32 == addr_override,
    };
    let reg_of = |modrm: u8| (modrm >> 3) & 7 | if rex & 4 != 0 { 8 } else { 0 };
    let high8 = |reg: u8| rex == 0 && (4..8).contains(&reg);

    let simple = |op: Op, len: usize| Ok(Insn { len: len as u8, op });
    match op {
        0xE4..=0xE7 => {
            c.skip(1)?;
            simple(Op::PortIo, c.pos)
        }
        0xEC..=0xEF | 0x6C..=0x6F => simple(Op::PortIo, c.pos),
        0xF4 => simple(Op::Hlt, c.pos),
        0x0F => match c.next()? {
            0xA2 => simple(Op::Cpuid, c.pos),
            0x30 => simple(Op::Wrmsr, c.pos),
            0x32 => simple(Op::Rdmsr, c.pos),
            0x01 => match c.next()? {
                0xD9 => simple(Op::Vmmcall, c.pos),
                0xC1 => simple(Op::Vmcall, c.pos),
                x => Err(DecodeError::Unsupported { opcode: x }),
            },
            0xBA => {
                let modrm = c.next()?;
                if modrm >> 6 == 3 || (modrm >> 3) & 7 != 4 {
                    return Err(DecodeError::Unsupported { opcode: 0xBA });
                }
                modrm_tail(&mut c, modrm, addr16)?;
                let bit = c.next()?;
                simple(Op::BitTest { size: opsize, bit }, c.pos)
            }
            o @ (0xB6 | 0xB7) => {
                let modrm = c.next()?;
                modrm_tail(&mut c, modrm, addr16)?;
                let reg = reg_of(modrm);
                let size = if o == 0xB6 { 1 } else { 2 };
                simple(
                    Op::Load {
                        size,
                        reg,
                        high_byte: false,
                        zero_extend_to: Some(opsize),
                    },
                    c.pos,
                )
            }
            x => Err(DecodeError::Unsupported { opcode: x }),
        },
        0x88..=0x8B => {
            let modrm = c.next()?;
            if modrm >> 6 == 3 {
                return Err(DecodeError::Unsupported { opcode: op });
            }
            modrm_tail(&mut c, modrm, addr16)?;
            let size = if op & 1 == 0 { 1 } else { opsize };
            let reg = reg_of(modrm);
            let high_byte = size == 1 && high8(reg);
            let op = if op <= 0x89 {
                Op::StoreReg {
                    size,
                    reg,
                    high_byte,
                }
            } else {
                Op::Load {
                    size,
                    reg,
                    high_byte,
                    zero_extend_to: None,
                }
            };
            simple(op, c.pos)
        }
        // MOV between AL/eAX and a direct address (moffs): the offset has the address size.
        0xA0..=0xA3 => {
            let abytes = match mode {
                CpuMode::Long64 if addr_override => 4,
                CpuMode::Long64 => 8,
                _ if addr16 => 2,
                _ => 4,
            };
            c.skip(abytes)?;
            let size = if op & 1 == 0 { 1 } else { opsize };
            let op = if op <= 0xA1 {
                Op::Load {
                    size,
                    reg: 0,
                    high_byte: false,
                    zero_extend_to: None,
                }
            } else {
                Op::StoreReg {
                    size,
                    reg: 0,
                    high_byte: false,
                }
            };
            simple(op, c.pos)
        }
        // ALU with a memory destination and a register source: ADD/OR/AND/SUB/XOR/CMP r/m, reg
        // and TEST r/m, reg.
        0x00 | 0x01 | 0x08 | 0x09 | 0x20 | 0x21 | 0x28 | 0x29 | 0x30 | 0x31 | 0x38 | 0x39
        | 0x84 | 0x85 => {
            let modrm = c.next()?;
            if modrm >> 6 == 3 {
                return Err(DecodeError::Unsupported { opcode: op });
            }
            modrm_tail(&mut c, modrm, addr16)?;
            let kind = match op & 0xFE {
                0x84 => AluKind::Test,
                x => AluKind::group1(x >> 3).ok_or(DecodeError::Unsupported { opcode: op })?,
            };
            let size = if op & 1 == 0 { 1 } else { opsize };
            let reg = reg_of(modrm);
            let high_byte = size == 1 && high8(reg);
            simple(
                Op::Alu {
                    size,
                    kind,
                    src: AluSrc::Reg { reg, high_byte },
                },
                c.pos,
            )
        }
        // Group 1 with an immediate (80: imm8, 81: imm16/32, 83: imm8 sign-extended) and
        // TEST r/m, imm (F6 /0, F7 /0).
        0x80 | 0x81 | 0x83 | 0xF6 | 0xF7 => {
            let modrm = c.next()?;
            let sub = (modrm >> 3) & 7;
            if modrm >> 6 == 3 {
                return Err(DecodeError::Unsupported { opcode: op });
            }
            let kind = if op >= 0xF6 {
                (sub == 0).then_some(AluKind::Test)
            } else {
                AluKind::group1(sub)
            }
            .ok_or(DecodeError::Unsupported { opcode: op })?;
            modrm_tail(&mut c, modrm, addr16)?;
            let size = if op & 1 == 0 { 1 } else { opsize };
            let imm_bytes = if op == 0x83 { 1 } else { size.min(4) as usize };
            let raw = c.imm(imm_bytes)?;
            let imm_bits = imm_bytes as u32 * 8;
            let imm = if imm_bits < 64 && raw & (1 << (imm_bits - 1)) != 0 {
                raw | (u64::MAX << imm_bits)
            } else {
                raw
            };
            simple(
                Op::Alu {
                    size,
                    kind,
                    src: AluSrc::Imm(imm),
                },
                c.pos,
            )
        }
        0xC6 | 0xC7 => {
            let modrm = c.next()?;
            if modrm >> 6 == 3 || (modrm >> 3) & 7 != 0 {
                return Err(DecodeError::Unsupported { opcode: op });
            }
            modrm_tail(&mut c, modrm, addr16)?;
            let size = if op == 0xC6 { 1 } else { opsize };
            let n = size.min(4) as usize;
            let mut imm = c.imm(n)?;
            if size == 8 && imm & 0x8000_0000 != 0 {
                imm |= 0xFFFF_FFFF_0000_0000;
            }
            simple(Op::StoreImm { size, imm }, c.pos)
        }
        x => Err(DecodeError::Unsupported { opcode: x }),
    }
}

/// Consumes SIB and displacement after a memory ModRM.
fn modrm_tail(c: &mut Cursor, modrm: u8, addr16: bool) -> Result<(), DecodeError> {
    let (md, rm) = (modrm >> 6, modrm & 7);
    if addr16 {
        let disp = match md {
            0 if rm == 6 => 2,
            0 => 0,
            1 => 1,
            2 => 2,
            _ => 0,
        };
        return c.skip(disp);
    }
    let mut disp = match md {
        0 if rm == 5 => 4,
        0 => 0,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if md != 3 && rm == 4 {
        let sib = c.next()?;
        if md == 0 && sib & 7 == 5 {
            disp = 4;
        }
    }
    c.skip(disp)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hypercall_instructions() {
        assert!(is_hypercall(&[0x0F, 0x01, 0xC1, 0x90]));
        assert!(is_hypercall(&[0x0F, 0x01, 0xD9]));
        // UD2, VMLAUNCH, a truncated fetch, a prefixed VMCALL: not hypercalls.
        assert!(!is_hypercall(&[0x0F, 0x0B, 0x90]));
        assert!(!is_hypercall(&[0x0F, 0x01, 0xC2]));
        assert!(!is_hypercall(&[0x0F, 0x01]));
        assert!(!is_hypercall(&[0x66, 0x0F, 0x01, 0xC1]));
    }

    use super::*;
    use CpuMode::*;

    fn len(b: &[u8], m: CpuMode) -> u8 {
        decode(b, m).unwrap().len
    }

    #[test]
    fn port_io_and_system_instructions() {
        assert_eq!(len(&[0xEE], Prot32), 1); // out dx, al
        assert_eq!(len(&[0xE6, 0x80], Prot32), 2); // out 0x80, al
        assert_eq!(len(&[0x66, 0xEF], Prot32), 2); // out dx, ax
        assert_eq!(len(&[0xF3, 0x6E], Long64), 2); // rep outsb
        assert_eq!(len(&[0xF3, 0x66, 0x6D], Prot32), 3); // rep insw
        assert_eq!(
            decode(&[0x0F, 0xA2], Long64).unwrap(),
            Insn {
                len: 2,
                op: Op::Cpuid
            }
        );
        assert_eq!(
            decode(&[0xF4], Real16).unwrap(),
            Insn {
                len: 1,
                op: Op::Hlt
            }
        );
        assert_eq!(
            decode(&[0x0F, 0x01, 0xD9], Prot32).unwrap(),
            Insn {
                len: 3,
                op: Op::Vmmcall
            }
        );
        assert_eq!(decode(&[0x0F, 0x32], Long64).unwrap().op, Op::Rdmsr);
        assert_eq!(decode(&[0x0F, 0x30], Long64).unwrap().op, Op::Wrmsr);
    }

    #[test]
    fn mmio_moves() {
        // mov [rax+0x300], ecx  (89 88 00 03 00 00)
        assert_eq!(
            decode(&[0x89, 0x88, 0x00, 0x03, 0x00, 0x00], Long64).unwrap(),
            Insn {
                len: 6,
                op: Op::StoreReg {
                    size: 4,
                    reg: 1,
                    high_byte: false
                }
            }
        );
        // mov r9d, [rdx+0x20]  (44 8B 4A 20)
        assert_eq!(
            decode(&[0x44, 0x8B, 0x4A, 0x20], Long64).unwrap(),
            Insn {
                len: 4,
                op: Op::Load {
                    size: 4,
                    reg: 9,
                    high_byte: false,
                    zero_extend_to: None
                }
            }
        );
        // mov dword [0xFEE00300], 0x4500  (C7 05 00 03 E0 FE 00 45 00 00) in 32-bit code
        assert_eq!(
            decode(
                &[0xC7, 0x05, 0x00, 0x03, 0xE0, 0xFE, 0x00, 0x45, 0x00, 0x00],
                Prot32
            )
            .unwrap(),
            Insn {
                len: 10,
                op: Op::StoreImm {
                    size: 4,
                    imm: 0x4500
                }
            }
        );
        // mov [esp+ebx*4+0x10], eax with SIB and disp8  (89 44 9C 10)
        assert_eq!(len(&[0x89, 0x44, 0x9C, 0x10], Prot32), 4);
        // SIB with no base: mov eax, [ebx*4+0x1000]  (8B 04 9D 00 10 00 00)
        assert_eq!(len(&[0x8B, 0x04, 0x9D, 0x00, 0x10, 0x00, 0x00], Prot32), 7);
        // mov ah, [bx+si]  16-bit addressing
        assert_eq!(
            decode(&[0x8A, 0x20], Real16).unwrap(),
            Insn {
                len: 2,
                op: Op::Load {
                    size: 1,
                    reg: 4,
                    high_byte: true,
                    zero_extend_to: None
                }
            }
        );
        // mov [0x1234], ax  16-bit: disp16
        assert_eq!(len(&[0x89, 0x06, 0x34, 0x12], Real16), 4);
        // 67 prefix in 32-bit code switches to 16-bit addressing.
        assert_eq!(len(&[0x67, 0x89, 0x06, 0x34, 0x12], Prot32), 5);
        // REX.W store of an immediate is sign-extended: mov qword [rdi], -1
        assert_eq!(
            decode(&[0x48, 0xC7, 0x07, 0xFF, 0xFF, 0xFF, 0xFF], Long64)
                .unwrap()
                .op,
            Op::StoreImm {
                size: 8,
                imm: u64::MAX
            }
        );
        // With REX, register 6 at byte size is SIL, not DH.
        assert_eq!(
            decode(&[0x40, 0x88, 0x37], Long64).unwrap().op,
            Op::StoreReg {
                size: 1,
                reg: 6,
                high_byte: false
            }
        );
        // movzx eax, word [rbx]
        assert_eq!(
            decode(&[0x0F, 0xB7, 0x03], Long64).unwrap().op,
            Op::Load {
                size: 2,
                reg: 0,
                high_byte: false,
                zero_extend_to: Some(4)
            }
        );
        // 66 in 64-bit mode: 16-bit operand, C7 takes imm16.
        assert_eq!(
            decode(&[0x66, 0xC7, 0x00, 0x34, 0x12], Long64).unwrap(),
            Insn {
                len: 5,
                op: Op::StoreImm {
                    size: 2,
                    imm: 0x1234
                }
            }
        );
        // moffs forms: mov eax, [0xFEE00020] in 32-bit code; mov [moffs64], al in 64-bit code.
        assert_eq!(
            decode(&[0xA1, 0x20, 0x00, 0xE0, 0xFE], Prot32).unwrap(),
            Insn {
                len: 5,
                op: Op::Load {
                    size: 4,
                    reg: 0,
                    high_byte: false,
                    zero_extend_to: None
                }
            }
        );
        assert_eq!(len(&[0xA2, 0, 0, 0, 0, 0, 0, 0, 0], Long64), 9);
        assert_eq!(len(&[0x67, 0xA3, 0, 0, 0, 0], Long64), 6);
        assert_eq!(len(&[0xA1, 0x34, 0x12], Real16), 3);
        // RIP-relative: mov eax, [rip+disp32]
        assert_eq!(len(&[0x8B, 0x05, 1, 2, 3, 4], Long64), 6);
        // An absolute address in 64-bit code: mov eax, [0xFEE00020] (SIB, no base, no index).
        assert_eq!(len(&[0x8B, 0x04, 0x25, 0x20, 0x00, 0xE0, 0xFE], Long64), 7);
        // ... and its 64-bit moffs form: movabs eax, [0xFEE00020].
        assert_eq!(len(&[0xA1, 0x20, 0x00, 0xE0, 0xFE, 0, 0, 0, 0], Long64), 9);
    }

    #[test]
    fn read_modify_write_alu() {
        // or dword [rbx+0xf0], 0x1ff  (81 8B F0 00 00 00 FF 01 00 00): what LLVM makes of a
        // volatile read, OR, volatile write of the APIC's spurious-vector register.
        assert_eq!(
            decode(
                &[0x81, 0x8B, 0xF0, 0x00, 0x00, 0x00, 0xFF, 0x01, 0x00, 0x00],
                Long64
            )
            .unwrap(),
            Insn {
                len: 10,
                op: Op::Alu {
                    size: 4,
                    kind: AluKind::Or,
                    src: AluSrc::Imm(0x1FF)
                }
            }
        );
        // and dword [rax], -2 (83 20 FE): imm8 sign-extended.
        assert_eq!(
            decode(&[0x83, 0x20, 0xFE], Long64).unwrap().op,
            Op::Alu {
                size: 4,
                kind: AluKind::And,
                src: AluSrc::Imm(u64::MAX - 1)
            }
        );
        // test byte [rdi+4], 0x20 (F6 47 04 20)
        assert_eq!(
            decode(&[0xF6, 0x47, 0x04, 0x20], Long64).unwrap(),
            Insn {
                len: 4,
                op: Op::Alu {
                    size: 1,
                    kind: AluKind::Test,
                    src: AluSrc::Imm(0x20)
                }
            }
        );
        // or [rdx], ah (08 22) without REX: AH is the high byte of RAX.
        assert_eq!(
            decode(&[0x08, 0x22], Long64).unwrap().op,
            Op::Alu {
                size: 1,
                kind: AluKind::Or,
                src: AluSrc::Reg {
                    reg: 4,
                    high_byte: true
                }
            }
        );
        // cmp [r8], r9 (4D 39 08)
        assert_eq!(
            decode(&[0x4D, 0x39, 0x08], Long64).unwrap().op,
            Op::Alu {
                size: 8,
                kind: AluKind::Cmp,
                src: AluSrc::Reg {
                    reg: 9,
                    high_byte: false
                }
            }
        );
        // bt dword [rbx], 12 (0F BA 23 0C): the ICR delivery-status poll.
        assert_eq!(
            decode(&[0x0F, 0xBA, 0x23, 0x0C], Long64).unwrap(),
            Insn {
                len: 4,
                op: Op::BitTest { size: 4, bit: 12 }
            }
        );
        assert_eq!(bit_test(4, 1 << 12, 12, 0x202), 0x203);
        // The bit offset wraps at the operand size.
        assert_eq!(bit_test(4, 0, 44, 0x203), 0x202);
        // BTS, ADC (/2) and register destinations are not MMIO forms we emulate.
        assert!(decode(&[0x0F, 0xBA, 0x2B, 0x0C], Long64).is_err());
        assert!(decode(&[0x81, 0x10, 0, 0, 0, 0], Long64).is_err());
        assert!(decode(&[0x09, 0xC0], Long64).is_err());
        assert!(decode(&[0xF7, 0x18], Long64).is_err()); // NEG
    }

    #[test]
    fn alu_results_and_flags() {
        const CF: u64 = FLAG_CF;
        const ZF: u64 = FLAG_ZF;
        const SF: u64 = FLAG_SF;
        const OF: u64 = FLAG_OF;
        const PF: u64 = FLAG_PF;
        // OR clears CF/OF, keeps unrelated bits (IF = 0x200).
        let (r, f) = alu(AluKind::Or, 4, 0x0F0, 0x1FF, 0x200 | CF | OF);
        assert_eq!((r, f & !PF), (0x1FF, 0x200));
        // SUB with borrow: 0 - 1 at byte size = 0xFF, CF and SF set.
        let (r, f) = alu(AluKind::Sub, 1, 0, 1, 0);
        assert_eq!(r, 0xFF);
        assert_eq!(f & (CF | SF | ZF | OF), CF | SF);
        // CMP equal: ZF, no CF.
        let (_, f) = alu(AluKind::Cmp, 4, 7, 7, 0);
        assert_eq!(f & (CF | ZF), ZF);
        // ADD signed overflow at 32 bits: 0x7fffffff + 1.
        let (r, f) = alu(AluKind::Add, 4, 0x7FFF_FFFF, 1, 0);
        assert_eq!(r, 0x8000_0000);
        assert_eq!(f & (OF | SF | CF), OF | SF);
        // ADD carry at 64 bits.
        let (r, f) = alu(AluKind::Add, 8, u64::MAX, 1, 0);
        assert_eq!((r, f & (CF | ZF)), (0, CF | ZF));
        // TEST sets ZF when no bit is shared; parity of the low byte 0x03 is even.
        let (_, f) = alu(AluKind::Test, 1, 0x10, 0x20, 0);
        assert_eq!(f & ZF, ZF);
        let (_, f) = alu(AluKind::Xor, 1, 0x01, 0x02, 0);
        assert_eq!(f & PF, PF);
    }

    #[test]
    fn errors() {
        assert_eq!(decode(&[0x0F], Long64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[], Long64), Err(DecodeError::Truncated));
        assert_eq!(
            decode(&[0x90], Long64),
            Err(DecodeError::Unsupported { opcode: 0x90 })
        );
        assert_eq!(
            decode(&[0x89, 0xC0], Long64),
            Err(DecodeError::Unsupported { opcode: 0x89 })
        );
        assert_eq!(decode(&[0x66; 20], Long64), Err(DecodeError::TooLong));
        assert_eq!(
            decode(&[0xC7, 0x05, 0, 0], Prot32),
            Err(DecodeError::Truncated)
        );
    }
}
