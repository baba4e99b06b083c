//! String port I/O (INS/OUTS, REP or not) against a model of guest memory and of the CPU. The
//! guest's linear memory is a window of bytes (everything else faults); a reference model
//! computes, element by element, what the CPU would do: which bytes move, how RSI/RDI/RCX
//! advance (masked to the address size, 16-bit updates keeping the upper bits), where the first
//! fault is, and when a long REP yields. Registers, memory, port traffic and outcome must match
//! the emulation exactly; registers the instruction does not use stay unchanged.
#![no_main]

use std::collections::BTreeMap;

use acrn_hypervisor::{
    vcpu::decode::CpuMode,
    vcpu::string_io::{
        execute, scan_prefixes, Fault, LinearMem, Outcome, SegReg, StringOp, MAX_ITERATIONS,
    },
    vcpu::{GuestRegs, IoDirection},
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    size: u8,
    out: bool,
    rep: bool,
    addr_size: u8,
    seg_base: u64,
    df: bool,
    long_mode: bool,
    rcx: u16,
    rcx_high: u64,
    rsi: u64,
    rdi: u64,
    other: [u64; 12],
    /// Where the mapped window starts, relative to the first element's address.
    window_delta: i16,
    window: Vec<u8>,
    port_seed: u32,
    /// Prefix bytes for `scan_prefixes`.
    prefixes: Vec<u8>,
}

/// Linear memory: `bytes` at `base` (wrapping), nothing else.
#[derive(Clone, PartialEq, Debug)]
struct Window {
    base: u64,
    bytes: Vec<u8>,
}

impl Window {
    fn index(&self, la: u64) -> Option<usize> {
        let off = la.wrapping_sub(self.base);
        (off < self.bytes.len() as u64).then_some(off as usize)
    }
    fn all(&self, la: u64, n: usize) -> Option<Vec<usize>> {
        (0..n as u64)
            .map(|i| self.index(la.wrapping_add(i)))
            .collect()
    }
}

impl LinearMem for Window {
    fn read(&self, la: u64, buf: &mut [u8]) -> bool {
        let Some(idx) = self.all(la, buf.len()) else {
            return false;
        };
        for (b, i) in buf.iter_mut().zip(idx) {
            *b = self.bytes[i];
        }
        true
    }
    fn write(&mut self, la: u64, data: &[u8]) -> bool {
        let Some(idx) = self.all(la, data.len()) else {
            return false;
        };
        for (&b, i) in data.iter().zip(idx) {
            self.bytes[i] = b;
        }
        true
    }
}

fn port_value(seed: u32, k: u64) -> u32 {
    seed ^ (k as u32).wrapping_mul(0x9E37_79B9)
}

fn regs_tuple(r: &GuestRegs) -> [u64; 15] {
    [
        r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
        r.r14, r.r15,
    ]
}

#[derive(Debug, PartialEq)]
enum PortEvent {
    In,
    Out(u32),
}

fuzz_target!(|input: Input| {
    check_prefixes(&input.prefixes);

    let size = [1u8, 2, 4][input.size as usize % 3];
    let addr_size = [2u8, 4, 8][input.addr_size as usize % 3];
    let dir = if input.out {
        IoDirection::Out
    } else {
        IoDirection::In
    };
    let op = StringOp {
        size,
        dir,
        rep: input.rep,
        addr_size,
        seg_base: input.seg_base,
        df: input.df,
        long_mode: input.long_mode,
    };
    let mut regs = GuestRegs::default();
    let o = input.other;
    (regs.rax, regs.rbx, regs.rdx, regs.rbp) = (o[0], o[1], o[2], o[3]);
    (regs.r8, regs.r9, regs.r10, regs.r11) = (o[4], o[5], o[6], o[7]);
    (regs.r12, regs.r13, regs.r14, regs.r15) = (o[8], o[9], o[10], o[11]);
    // Small counts mostly, so that whole REPs complete; the high bits test the masking.
    regs.rcx = input.rcx_high << 16 | u64::from(input.rcx);
    regs.rsi = input.rsi;
    regs.rdi = input.rdi;

    let mask = match addr_size {
        2 => 0xFFFF,
        4 => 0xFFFF_FFFF,
        _ => u64::MAX,
    };
    let linear = |index: u64| {
        let la = input.seg_base.wrapping_add(index & mask);
        if input.long_mode {
            la
        } else {
            la & 0xFFFF_FFFF
        }
    };
    let first = linear(if input.out { regs.rsi } else { regs.rdi });
    let window = Window {
        base: first.wrapping_add(input.window_delta as i64 as u64),
        bytes: input.window,
    };

    // The emulation.
    let mut got_regs = regs;
    let mut got_mem = window.clone();
    let mut got_ports = Vec::new();
    let mut k_in = 0u64;
    let got = execute(&op, &mut got_regs, &mut got_mem, |d, v| match d {
        IoDirection::In => {
            got_ports.push(PortEvent::In);
            k_in += 1;
            port_value(input.port_seed, k_in - 1)
        }
        IoDirection::Out => {
            got_ports.push(PortEvent::Out(v));
            0
        }
    });

    // The model.
    let mut want_regs = regs;
    let mut want_mem = window;
    let mut want_ports = Vec::new();
    let count = if input.rep { regs.rcx & mask } else { 1 };
    let set = |reg: &mut u64, value: u64| {
        *reg = match addr_size {
            2 => (*reg & !0xFFFF) | (value & 0xFFFF),
            4 => value & 0xFFFF_FFFF,
            _ => value,
        }
    };
    let mut want: Result<Outcome, Fault> = Ok(Outcome::Done);
    for k in 0..count {
        if k == MAX_ITERATIONS {
            want = Ok(Outcome::Again);
            break;
        }
        let index = if input.out {
            want_regs.rsi
        } else {
            want_regs.rdi
        };
        let la = linear(index);
        // INS reads the port before it stores the element, so a fault still consumes it.
        if !input.out {
            want_ports.push(PortEvent::In);
        }
        let Some(idx) = want_mem.all(la, size as usize) else {
            want = Err(Fault { la });
            break;
        };
        if input.out {
            let mut v = 0u32;
            for (n, &i) in idx.iter().enumerate() {
                v |= u32::from(want_mem.bytes[i]) << (8 * n);
            }
            want_ports.push(PortEvent::Out(v));
        } else {
            let v = port_value(input.port_seed, k).to_le_bytes();
            for (n, &i) in idx.iter().enumerate() {
                want_mem.bytes[i] = v[n];
            }
        }
        let step = if input.df {
            index.wrapping_sub(size as u64)
        } else {
            index.wrapping_add(size as u64)
        };
        if input.out {
            set(&mut want_regs.rsi, step);
        } else {
            set(&mut want_regs.rdi, step);
        }
        if input.rep {
            set(&mut want_regs.rcx, count - k - 1);
        }
    }

    assert_eq!(got, want, "outcome");
    assert_eq!(regs_tuple(&got_regs), regs_tuple(&want_regs), "registers");
    assert_eq!(got_ports, want_ports, "port traffic");
    assert_eq!(got_mem, want_mem, "guest memory");
});

/// `scan_prefixes` finds an INS/OUTS only after legacy (and, in long mode, REX) prefixes,
/// within the 15-byte limit; the last segment override wins for OUTS, INS always uses ES.
fn check_prefixes(bytes: &[u8]) {
    for (mode, default) in [
        (CpuMode::Real16, 2),
        (CpuMode::Prot16, 2),
        (CpuMode::Prot32, 4),
        (CpuMode::Long64, 8),
    ] {
        let Some(p) = scan_prefixes(bytes, mode) else {
            continue;
        };
        let at = bytes
            .iter()
            .position(|b| (0x6C..=0x6F).contains(b))
            .expect("a string I/O opcode");
        assert!(at < 15, "opcode past the 15-byte limit");
        let prefixes = &bytes[..at];
        let segs: BTreeMap<u8, SegReg> = [
            (0x26, SegReg::Es),
            (0x2E, SegReg::Cs),
            (0x36, SegReg::Ss),
            (0x3E, SegReg::Ds),
            (0x64, SegReg::Fs),
            (0x65, SegReg::Gs),
        ]
        .into();
        for &b in prefixes {
            let rex = mode == CpuMode::Long64 && (0x40..=0x4F).contains(&b);
            assert!(
                rex || segs.contains_key(&b) || matches!(b, 0x66 | 0x67 | 0xF0 | 0xF2 | 0xF3),
                "{b:#x} taken as a prefix in {mode:?}"
            );
        }
        let addr = if prefixes.contains(&0x67) {
            match mode {
                CpuMode::Long64 | CpuMode::Real16 | CpuMode::Prot16 => 4,
                CpuMode::Prot32 => 2,
            }
        } else {
            default
        };
        assert_eq!(p.addr_size, addr);
        let seg = if bytes[at] <= 0x6D {
            SegReg::Es
        } else {
            prefixes
                .iter()
                .rev()
                .find_map(|b| segs.get(b).copied())
                .unwrap_or(SegReg::Ds)
        };
        assert_eq!(p.seg, seg);
    }
}
