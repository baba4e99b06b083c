//! The instruction decoder on arbitrary bytes in every CPU mode. What must hold: a decoded
//! length is 1..=15 and never more than the bytes given; the decoder looks at nothing past that
//! length (the same bytes cut there decode alike); operand sizes and register numbers are ones
//! the emulation can use; and the length and operation agree with an independent decoder
//! (iced-x86) wherever that decoder calls the instruction valid.
#![no_main]

use acrn_hypervisor::vcpu::decode::{decode, AluKind, AluSrc, CpuMode, DecodeError, Op};
use iced_x86::{Decoder, DecoderOptions, MemorySize, Mnemonic};
use libfuzzer_sys::fuzz_target;

const MODES: [CpuMode; 4] = [
    CpuMode::Real16,
    CpuMode::Prot16,
    CpuMode::Prot32,
    CpuMode::Long64,
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let mode = MODES[sel as usize % 4];
    check(bytes, mode);
});

fn check(bytes: &[u8], mode: CpuMode) {
    let insn = match decode(bytes, mode) {
        Ok(i) => i,
        Err(DecodeError::TooLong) => {
            assert!(bytes.len() > 15, "TooLong from {} bytes", bytes.len());
            return;
        }
        Err(DecodeError::Truncated) => {
            assert!(bytes.len() <= 15, "Truncated with {} bytes", bytes.len());
            return;
        }
        Err(DecodeError::Unsupported { .. }) => return,
    };
    let len = insn.len as usize;
    assert!((1..=15).contains(&len), "length {len}");
    assert!(len <= bytes.len(), "length {len} > {} bytes", bytes.len());
    assert_eq!(
        decode(&bytes[..len], mode),
        Ok(insn),
        "the decoder depends on bytes past the instruction"
    );
    check_operands(insn.op);
    compare_with_iced(&bytes[..len], mode, insn.op);
}

fn size_ok(size: u8) -> bool {
    matches!(size, 1 | 2 | 4 | 8)
}

/// A register operand the emulation resolves: 0..=15, and AH..BH (4..=7) only as bytes.
fn reg_ok(size: u8, reg: u8, high_byte: bool) -> bool {
    reg < 16 && (!high_byte || (size == 1 && (4..8).contains(&reg)))
}

fn check_operands(op: Op) {
    match op {
        Op::StoreReg {
            size,
            reg,
            high_byte,
        } => assert!(size_ok(size) && reg_ok(size, reg, high_byte), "{op:?}"),
        Op::StoreImm { size, imm } => {
            assert!(size_ok(size), "{op:?}");
            if size < 8 {
                assert_eq!(
                    imm >> (size * 8),
                    0,
                    "immediate wider than the store: {op:?}"
                );
            }
        }
        Op::Load {
            size,
            reg,
            high_byte,
            zero_extend_to,
        } => {
            assert!(size_ok(size) && reg_ok(size, reg, high_byte), "{op:?}");
            if let Some(to) = zero_extend_to {
                assert!(size_ok(to) && to >= size && !high_byte, "{op:?}");
            }
        }
        Op::Alu { size, src, .. } => {
            assert!(size_ok(size), "{op:?}");
            if let AluSrc::Reg { reg, high_byte } = src {
                assert!(reg_ok(size, reg, high_byte), "{op:?}");
            }
        }
        Op::BitTest { size, .. } => assert!(matches!(size, 2 | 4 | 8), "{op:?}"),
        Op::PortIo | Op::Cpuid | Op::Hlt | Op::Vmmcall | Op::Vmcall | Op::Rdmsr | Op::Wrmsr => {}
    }
}

fn compare_with_iced(bytes: &[u8], mode: CpuMode, op: Op) {
    let bitness = match mode {
        CpuMode::Real16 | CpuMode::Prot16 => 16,
        CpuMode::Prot32 => 32,
        CpuMode::Long64 => 64,
    };
    let mut d = Decoder::with_ip(bitness, bytes, 0, DecoderOptions::NONE);
    let i = d.decode();
    if i.is_invalid() {
        // iced refuses e.g. LOCK on a MOV (#UD on hardware): nothing to compare.
        return;
    }
    assert_eq!(
        i.len(),
        bytes.len(),
        "length differs from iced ({:?})",
        i.code()
    );
    let m = i.mnemonic();
    let expected: &[Mnemonic] = match op {
        Op::PortIo => &[
            Mnemonic::In,
            Mnemonic::Out,
            Mnemonic::Insb,
            Mnemonic::Insw,
            Mnemonic::Insd,
            Mnemonic::Outsb,
            Mnemonic::Outsw,
            Mnemonic::Outsd,
        ],
        Op::Cpuid => &[Mnemonic::Cpuid],
        Op::Hlt => &[Mnemonic::Hlt],
        // F3 0F 01 D9 is VMGEXIT, which runs as VMMCALL outside SEV-ES guests.
        Op::Vmmcall => &[Mnemonic::Vmmcall, Mnemonic::Vmgexit],
        Op::Vmcall => &[Mnemonic::Vmcall],
        Op::Rdmsr => &[Mnemonic::Rdmsr],
        Op::Wrmsr => &[Mnemonic::Wrmsr],
        Op::StoreReg { .. } | Op::StoreImm { .. } => &[Mnemonic::Mov],
        Op::Load {
            zero_extend_to: None,
            ..
        } => &[Mnemonic::Mov],
        Op::Load { .. } => &[Mnemonic::Movzx],
        Op::Alu { kind, .. } => match kind {
            AluKind::Add => &[Mnemonic::Add],
            AluKind::Or => &[Mnemonic::Or],
            AluKind::And => &[Mnemonic::And],
            AluKind::Sub => &[Mnemonic::Sub],
            AluKind::Xor => &[Mnemonic::Xor],
            AluKind::Cmp => &[Mnemonic::Cmp],
            AluKind::Test => &[Mnemonic::Test],
        },
        Op::BitTest { .. } => &[Mnemonic::Bt],
    };
    assert!(
        expected.contains(&m),
        "{op:?} decoded where iced sees {:?}",
        i.code()
    );
    let size = match op {
        Op::StoreReg { size, .. }
        | Op::StoreImm { size, .. }
        | Op::Load { size, .. }
        | Op::Alu { size, .. }
        | Op::BitTest { size, .. } => size as usize,
        _ => return,
    };
    let mem_size = match i.memory_size() {
        MemorySize::UInt8 | MemorySize::Int8 => 1,
        MemorySize::UInt16 | MemorySize::Int16 => 2,
        MemorySize::UInt32 | MemorySize::Int32 => 4,
        MemorySize::UInt64 | MemorySize::Int64 => 8,
        other => panic!("iced sees a {other:?} memory operand for {op:?}"),
    };
    assert_eq!(
        size,
        mem_size,
        "memory operand size differs from iced ({:?})",
        i.code()
    );
}
