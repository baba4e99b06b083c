//! The post-launched VM's virtual interrupt controllers (`postvm::vintr`: local APICs, I/O APIC,
//! MSI decoding, interrupt selection) driven by a sequence of register reads and writes, line
//! changes, MSIs and interrupt acceptances, wired as the bare-metal loop wires them. What must
//! hold: nothing panics whatever the guest writes; a device never delivers to a vCPU outside
//! the VM (every destination set fits the VM's vCPU count) and never an exception vector
//! (0-15, which a real local APIC refuses, as MSI decoding does); EOI retires the highest
//! in-service vector; the vector handed to a vCPU is its highest pending one and outranks its
//! processor priority; I/O APIC registers read back what was written, bar read-only bits.
#![no_main]

use acrn_abi::irq::GsiOp;
use acrn_hypervisor::postvm::vintr::{
    decode_msi, deliverable, destinations, highest, LapicEffect, Message, PendingSet, Vectors,
    Vioapic, Vlapic, IOAPIC_PINS,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Action {
    LapicRead {
        vcpu: u8,
        off: u16,
    },
    LapicWrite {
        vcpu: u8,
        off: u16,
        val: u32,
    },
    IoapicRead {
        off: u8,
    },
    IoapicWrite {
        off: u8,
        val: u32,
    },
    /// IOREGSEL then IOWIN, as a guest programs a redirection entry.
    IoapicProgram {
        reg: u8,
        val: u32,
    },
    SetLine {
        pin: u8,
        op: u8,
    },
    Msi {
        addr_low: u32,
        data: u32,
    },
    Accept {
        vcpu: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    vcpus: u8,
    actions: Vec<Action>,
}

struct Vm {
    n: usize,
    lapics: Vec<Vlapic>,
    irr: Vec<PendingSet>,
    ioapic: Vioapic,
}

impl Vm {
    fn all(&self) -> u64 {
        (1u64 << self.n) - 1
    }
    fn ldrs(&self) -> Vec<u32> {
        self.lapics.iter().map(|l| l.ldr).collect()
    }
    fn deliver(&self, m: &Message) {
        let targets = destinations(m, &self.ldrs());
        self.set(m.vector, targets, "message");
    }
    fn set(&self, vector: u8, targets: u64, what: &str) {
        assert_eq!(
            targets & !self.all(),
            0,
            "{what} to vCPUs {targets:#x} of {}",
            self.n
        );
        if targets != 0 {
            assert!(vector >= 16, "{what} delivers exception vector {vector}");
        }
        for (i, irr) in self.irr.iter().enumerate() {
            if targets & (1 << i) != 0 {
                irr.set(vector);
            }
        }
    }
}

fn bit(v: &Vectors, vector: u8) -> bool {
    v[vector as usize / 64] & (1 << (vector % 64)) != 0
}

fuzz_target!(|input: Input| {
    let n = 1 + input.vcpus as usize % 16;
    let mut vm = Vm {
        n,
        lapics: (0..n).map(|i| Vlapic::new(i as u8)).collect(),
        irr: (0..n).map(|_| PendingSet::new()).collect(),
        ioapic: Vioapic::new(),
    };
    for action in input.actions.iter().take(512) {
        match *action {
            Action::LapicRead { vcpu, off } => {
                let i = vcpu as usize % n;
                let off = u64::from(off & 0xFF0);
                if let Ok(v) = vm.lapics[i].read(off, &vm.irr[i].snapshot()) {
                    if off == 0x20 {
                        assert_eq!(v, (i as u32) << 24, "APIC id");
                    }
                }
            }
            Action::LapicWrite { vcpu, off, val } => {
                let i = vcpu as usize % n;
                let off = u64::from(off & 0xFF0);
                let isr_before = vm.lapics[i].isr;
                let ldrs = vm.ldrs();
                match vm.lapics[i].write(off, val, &ldrs) {
                    Ok(LapicEffect::Eoi(v)) => {
                        assert_eq!(Some(v), highest(&isr_before), "EOI retires the highest");
                        assert!(!bit(&vm.lapics[i].isr, v));
                        let msgs: Vec<Message> = vm.ioapic.eoi(v).collect();
                        msgs.iter().for_each(|m| vm.deliver(m));
                    }
                    Ok(LapicEffect::Ipi { vector, targets }) => vm.set(vector, targets, "IPI"),
                    Ok(LapicEffect::None) => {
                        if off == 0xB0 {
                            assert_eq!(highest(&isr_before), None, "EOI with an ISR bit set");
                        }
                    }
                    Err(_) => {}
                }
            }
            Action::IoapicRead { off } => {
                vm.ioapic.read(u64::from(off));
            }
            Action::IoapicWrite { off, val } => {
                if let Some(m) = vm.ioapic.write(u64::from(off), val) {
                    vm.deliver(&m);
                }
            }
            Action::IoapicProgram { reg, val } => {
                vm.ioapic.write(0, u32::from(reg));
                let before = vm.ioapic.read(0x10);
                if let Some(m) = vm.ioapic.write(0x10, val) {
                    vm.deliver(&m);
                }
                let after = vm.ioapic.read(0x10);
                let r = u32::from(reg);
                if (0x10..0x10 + 2 * IOAPIC_PINS as u32).contains(&r) {
                    // Delivery status (12) and remote IRR (14) are read-only in the low word;
                    // a delivery may set remote IRR.
                    let ro = if r % 2 == 0 { 1 << 12 | 1 << 14 } else { 0 };
                    assert_eq!(after & !ro, val & !ro, "RTE register {r:#x} read back");
                    assert_eq!(after & ro & !(1 << 14), before & ro & !(1 << 14));
                }
            }
            Action::SetLine { pin, op } => {
                let op = [
                    GsiOp::SetHigh,
                    GsiOp::SetLow,
                    GsiOp::RaisingPulse,
                    GsiOp::FallingPulse,
                ][op as usize % 4];
                if let Some(m) = vm.ioapic.set_line(pin as usize, op) {
                    assert!((pin as usize) < IOAPIC_PINS);
                    vm.deliver(&m);
                }
            }
            Action::Msi { addr_low, data } => {
                if let Ok(m) = decode_msi(
                    0xFEE0_0000 | u64::from(addr_low & 0xF_FFFF),
                    u64::from(data),
                ) {
                    vm.deliver(&m);
                }
            }
            Action::Accept { vcpu } => {
                let i = vcpu as usize % n;
                let irr = vm.irr[i].snapshot();
                let l = &mut vm.lapics[i];
                if let Some(v) = deliverable(&irr, &l.isr, l.tpr()) {
                    assert_eq!(Some(v), highest(&irr));
                    let ppr = (l.tpr() >> 4).max(highest(&l.isr).map_or(0, |x| x >> 4));
                    assert!(v >> 4 > ppr, "vector {v:#x} at priority {ppr:#x}");
                    assert!(vm.irr[i].take(v));
                    l.isr[v as usize / 64] |= 1 << (v % 64);
                }
            }
        }
    }
});
