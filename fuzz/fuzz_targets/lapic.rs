//! The virtual local APICs of one VM (`devices::lapic`) driven by a sequence of xAPIC MMIO and
//! x2APIC MSR accesses, interrupt acceptances and acknowledgements, and time advancing by
//! arbitrary amounts (count-down, periodic and TSC-deadline timers), wired as `vcpu::run`
//! wires them: an IPI is routed with `irq::destinations` over the VM's views and accepted by
//! the receivers. What must hold: nothing panics; `pending()` never returns an exception
//! vector (< 16) and only one above the processor priority class; ISR and IRR never hold a
//! vector below 16; `ack` moves a vector from IRR to ISR; an EOI retires an in-service vector;
//! the ICR's delivery status reads 0; the current count never exceeds the initial count; an
//! IPI's destination set only names vCPUs of the VM.
#![no_main]

use acrn_hypervisor::devices::irq::{destinations, Delivery, LapicView, PendingSet};
use acrn_hypervisor::devices::lapic::{
    ApicMode, LapicEffect, Vlapic, MSR_APIC_BASE, MSR_TSC_DEADLINE, MSR_X2APIC_FIRST,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const ISR: u32 = 0x100;
const IRR: u32 = 0x200;
const ICR_LOW: u32 = 0x300;
const TIMER_INITIAL: u32 = 0x380;
const TIMER_CURRENT: u32 = 0x390;
const DELIVERY_STATUS: u32 = 1 << 12;

#[derive(Debug, Arbitrary)]
enum Action {
    MmioRead {
        cpu: u8,
        offset: u16,
        size: u8,
    },
    MmioWrite {
        cpu: u8,
        offset: u16,
        size: u8,
        value: u32,
    },
    /// An x2APIC register (0x800 + index), or IA32_APIC_BASE / IA32_TSC_DEADLINE.
    MsrRead {
        cpu: u8,
        msr: Msr,
    },
    MsrWrite {
        cpu: u8,
        msr: Msr,
        value: u64,
    },
    /// Sets IA32_APIC_BASE to x2APIC (or back to xAPIC / disabled): reached rarely otherwise.
    SetMode {
        cpu: u8,
        mode: u8,
    },
    Accept {
        cpu: u8,
        vector: u8,
        level: bool,
    },
    Post {
        cpu: u8,
        vector: u8,
        level: bool,
    },
    /// Injects the pending vector, as the backend does before entering the guest.
    Inject {
        cpu: u8,
    },
    Ack {
        cpu: u8,
        vector: u8,
    },
    Advance {
        ticks: u64,
    },
    Jump {
        now: u64,
    },
}

#[derive(Debug, Arbitrary)]
enum Msr {
    X2Apic(u8),
    ApicBase,
    TscDeadline,
    Other(u32),
}

impl Msr {
    fn number(&self) -> u32 {
        match self {
            Msr::X2Apic(index) => MSR_X2APIC_FIRST + *index as u32,
            Msr::ApicBase => MSR_APIC_BASE,
            Msr::TscDeadline => MSR_TSC_DEADLINE,
            Msr::Other(msr) => *msr,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    vcpus: u8,
    tsc_per_bus_tick: u8,
    actions: Vec<Action>,
}

/// Reads a register by its xAPIC offset in whatever mode the APIC is in.
fn read_reg(lapic: &Vlapic, offset: u32, now: u64) -> Option<u32> {
    match lapic.mode() {
        ApicMode::XApic => lapic.mmio_read(offset as u64, 4, now).ok(),
        ApicMode::X2Apic => lapic
            .msr_read(MSR_X2APIC_FIRST + (offset >> 4), now)
            .ok()
            .map(|v| v as u32),
        ApicMode::Disabled => None,
    }
}

fn reg_contains(lapic: &Vlapic, base: u32, vector: u8, now: u64) -> Option<bool> {
    let word = read_reg(lapic, base + (vector as u32 / 32) * 16, now)?;
    Some(word & (1 << (vector % 32)) != 0)
}

fn check(lapic: &Vlapic, now: u64) {
    if let Some(vector) = lapic.pending() {
        assert!(vector >= 16, "pending exception vector {vector}");
        assert!(
            vector & 0xF0 > lapic.ppr() & 0xF0,
            "pending {vector} under PPR {}",
            lapic.ppr()
        );
        if let Some(irr) = reg_contains(lapic, IRR, vector, now) {
            assert!(irr, "pending {vector} not in IRR");
        }
    }
    if let Some(isr0) = read_reg(lapic, ISR, now) {
        assert_eq!(isr0 & 0xFFFF, 0, "ISR holds a vector below 16");
    }
    if let Some(irr0) = read_reg(lapic, IRR, now) {
        assert_eq!(irr0 & 0xFFFF, 0, "IRR holds a vector below 16");
    }
    if let Some(icr) = read_reg(lapic, ICR_LOW, now) {
        assert_eq!(icr & DELIVERY_STATUS, 0, "ICR delivery status reads 1");
    }
    if let (Some(current), Some(initial)) = (
        read_reg(lapic, TIMER_CURRENT, now),
        read_reg(lapic, TIMER_INITIAL, now),
    ) {
        assert!(
            current <= initial,
            "current count {current} > initial {initial}"
        );
    }
}

struct Vm {
    lapics: Vec<Vlapic>,
    posted: Vec<PendingSet>,
    now: u64,
}

impl Vm {
    fn views(&self) -> Vec<LapicView> {
        self.lapics.iter().map(Vlapic::view).collect()
    }

    fn effect(&mut self, source: usize, effect: Option<LapicEffect>) {
        match effect {
            Some(LapicEffect::Ipi(msg)) => {
                let dest = destinations(&msg, Some(source), &self.views());
                let n = self.lapics.len();
                assert_eq!(
                    dest >> n,
                    0,
                    "IPI {msg:?} leaves the VM of {n} vCPUs: {dest:#x}"
                );
                if matches!(msg.delivery, Delivery::Fixed | Delivery::LowestPriority) {
                    for (i, lapic) in self.lapics.iter_mut().enumerate() {
                        if dest & (1 << i) != 0 {
                            lapic.accept(msg.vector, msg.level_trigger);
                        }
                    }
                }
            }
            Some(LapicEffect::Eoi { vector, .. }) => {
                assert!(vector >= 16, "EOI of exception vector {vector}");
                let lapic = &self.lapics[source];
                if let Some(isr) = reg_contains(lapic, ISR, vector, self.now) {
                    assert!(!isr, "EOI left {vector} in service");
                }
            }
            Some(LapicEffect::TimerChanged | LapicEffect::ModeChanged(_)) | None => {}
        }
    }

    fn fire_timers(&mut self) {
        for lapic in &mut self.lapics {
            if lapic.timer_deadline().is_some_and(|d| d <= self.now) {
                lapic.timer_expired(self.now);
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let n = (input.vcpus % 8) as usize + 1;
    let tick = input.tsc_per_bus_tick as u64;
    let mut vm = Vm {
        lapics: (0..n)
            .map(|i| Vlapic::new(i as u32, i == 0, tick))
            .collect(),
        posted: (0..n).map(|_| PendingSet::new()).collect(),
        now: 0,
    };
    for action in input.actions.iter().take(256) {
        match *action {
            Action::MmioRead { cpu, offset, size } => {
                let _ = vm.lapics[cpu as usize % n].mmio_read(offset as u64, size, vm.now);
            }
            Action::MmioWrite {
                cpu,
                offset,
                size,
                value,
            } => {
                let i = cpu as usize % n;
                let now = vm.now;
                if let Ok(effect) = vm.lapics[i].mmio_write(offset as u64, size, value, now) {
                    vm.effect(i, effect);
                }
            }
            Action::MsrRead { cpu, ref msr } => {
                let _ = vm.lapics[cpu as usize % n].msr_read(msr.number(), vm.now);
            }
            Action::MsrWrite {
                cpu,
                ref msr,
                value,
            } => {
                let i = cpu as usize % n;
                let now = vm.now;
                if let Ok(effect) = vm.lapics[i].msr_write(msr.number(), value, now) {
                    vm.effect(i, effect);
                }
            }
            Action::SetMode { cpu, mode } => {
                let i = cpu as usize % n;
                let base = vm.lapics[i].msr_read(MSR_APIC_BASE, vm.now).unwrap();
                let flags = [0, 1 << 11, 3 << 10][mode as usize % 3];
                let now = vm.now;
                if let Ok(effect) =
                    vm.lapics[i].msr_write(MSR_APIC_BASE, (base & !(3 << 10)) | flags, now)
                {
                    vm.effect(i, effect);
                }
            }
            Action::Accept { cpu, vector, level } => {
                let lapic = &mut vm.lapics[cpu as usize % n];
                let accepted = lapic.accept(vector, level);
                assert!(
                    !accepted || vector >= 16,
                    "accepted exception vector {vector}"
                );
            }
            Action::Post { cpu, vector, level } => {
                let i = cpu as usize % n;
                vm.posted[i].post(vector, level);
                vm.lapics[i].sync(&vm.posted[i]);
                assert!(vm.posted[i].is_empty(), "sync left posted vectors");
            }
            Action::Inject { cpu } => {
                let lapic = &mut vm.lapics[cpu as usize % n];
                if let Some(vector) = lapic.pending() {
                    assert!(lapic.ack(vector), "pending {vector} not acknowledged");
                    if let Some(isr) = reg_contains(lapic, ISR, vector, vm.now) {
                        assert!(isr, "acknowledged {vector} not in service");
                    }
                    if let Some(irr) = reg_contains(lapic, IRR, vector, vm.now) {
                        assert!(!irr, "acknowledged {vector} still requested");
                    }
                }
            }
            Action::Ack { cpu, vector } => {
                let lapic = &mut vm.lapics[cpu as usize % n];
                let acked = lapic.ack(vector);
                assert!(
                    !acked || vector >= 16,
                    "acknowledged exception vector {vector}"
                );
            }
            Action::Advance { ticks } => {
                vm.now = vm.now.saturating_add(ticks);
                vm.fire_timers();
            }
            Action::Jump { now } => {
                // A deadline can be armed from any time, also one before the last read.
                vm.now = now;
                vm.fire_timers();
            }
        }
        for lapic in &vm.lapics {
            check(lapic, vm.now);
        }
    }
});
