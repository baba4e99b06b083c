//! The virtual I/O APIC (`devices::ioapic`) driven by a sequence of IOREGSEL/IOWIN/EOI-register
//! accesses, line changes (logical and electrical) and EOIs. The model does not filter
//! vectors below 16 (the receiving local APIC refuses them), so what must hold is: nothing
//! panics; every message comes from an unmasked entry of a pin that exists and carries that
//! entry's vector, destination and mode; a level-triggered entry is not delivered again
//! before its EOI (remote IRR); registers read back what was written, bar the read-only
//! delivery-status and remote-IRR bits; the version register gives the pin count; the
//! destination set of a message, routed over the VM's local APICs, stays inside the VM.
#![no_main]

use acrn_hypervisor::devices::ioapic::{Vioapic, MAX_PINS};
use acrn_hypervisor::devices::irq::{destinations, DestMode, LineOp, Message, Shorthand};
use acrn_hypervisor::devices::lapic::Vlapic;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REMOTE_IRR: u64 = 1 << 14;
const LEVEL: u64 = 1 << 15;
const MASKED: u64 = 1 << 16;
const LOGICAL: u64 = 1 << 11;
const WRITABLE: u64 = 0xFF00_0000_0001_AFFF;

#[derive(Debug, Arbitrary)]
enum Action {
    Read {
        offset: u8,
        size: u8,
    },
    Write {
        offset: u8,
        size: u8,
        value: u32,
    },
    /// Selects register `index` and writes it through IOWIN (the common guest sequence).
    WriteRegister {
        index: u8,
        value: u32,
    },
    ReadRegister {
        index: u8,
    },
    SetIrq {
        pin: u8,
        op: u8,
    },
    SetLevel {
        pin: u8,
        high: bool,
    },
    Eoi {
        vector: u8,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    pins: u8,
    vcpus: u8,
    actions: Vec<Action>,
}

struct Checker {
    pins: usize,
    vcpus: usize,
}

impl Checker {
    /// A message delivered right after an operation: some unmasked entry has its content
    /// (for `pin` when the operation names one).
    fn message(&self, ioapic: &Vioapic, pin: Option<usize>, msg: &Message) {
        assert_eq!(msg.shorthand, Shorthand::None);
        assert!(
            !msg.wide_dest && msg.dest <= 0xFF,
            "wide destination {msg:?}"
        );
        let from = |p: usize| {
            let rte = ioapic.entry(p).unwrap();
            rte & MASKED == 0
                && rte as u8 == msg.vector
                && (rte >> 56) as u32 == msg.dest
                && (rte & LOGICAL != 0) == (msg.dest_mode == DestMode::Logical)
                && (!msg.level_trigger || rte & (LEVEL | REMOTE_IRR) == LEVEL | REMOTE_IRR)
        };
        match pin {
            Some(p) => assert!(from(p), "message {msg:?} not from pin {p}'s entry"),
            None => assert!((0..self.pins).any(from), "message {msg:?} from no entry"),
        }
        let lapics: Vec<_> = (0..self.vcpus)
            .map(|i| Vlapic::new(i as u32, i == 0, 1).view())
            .collect();
        let dest = destinations(msg, None, &lapics);
        assert_eq!(
            dest >> self.vcpus,
            0,
            "message {msg:?} leaves the VM: {dest:#x}"
        );
    }
}

fuzz_target!(|input: Input| {
    let pins = (input.pins as usize % MAX_PINS) + 1;
    let checker = Checker {
        pins,
        vcpus: (input.vcpus % 8) as usize + 1,
    };
    let mut ioapic = Vioapic::new(pins, 1);
    assert_eq!(ioapic.pins(), pins);
    assert_eq!((ioapic.read_register(1) >> 16) & 0xFF, pins as u32 - 1);
    for action in input.actions.iter().take(512) {
        match *action {
            Action::Read { offset, size } => {
                let _ = ioapic.mmio_read(offset as u64, size);
            }
            Action::Write {
                offset,
                size,
                value,
            } => {
                let mut messages = Vec::new();
                let _ = ioapic.mmio_write(offset as u64, size, value, |m| messages.push(m));
                for m in &messages {
                    checker.message(&ioapic, None, m);
                }
            }
            Action::WriteRegister { index, value } => {
                let entry = (index as u32).checked_sub(0x10).map(|n| n as usize / 2);
                let old = entry
                    .filter(|&p| p < pins)
                    .map(|p| ioapic.entry(p).unwrap());
                ioapic
                    .mmio_write(IOREGSEL, 4, index as u32, |_| unreachable!())
                    .unwrap();
                let mut messages = Vec::new();
                ioapic
                    .mmio_write(IOWIN, 4, value, |m| messages.push(m))
                    .unwrap();
                assert!(messages.len() <= 1);
                if let (Some(pin), Some(old)) = (entry, old) {
                    let new = ioapic.entry(pin).unwrap();
                    let shift = if index % 2 == 1 { 32 } else { 0 };
                    let written = (old & !(0xFFFF_FFFF << shift)) | ((value as u64) << shift);
                    assert_eq!(
                        new & WRITABLE,
                        written & WRITABLE,
                        "entry {pin} lost a write"
                    );
                    assert_eq!(new & (1 << 12), 0, "delivery status set");
                    if new & LEVEL == 0 {
                        assert_eq!(new & REMOTE_IRR, 0, "remote IRR on an edge entry");
                    } else if messages.is_empty() {
                        assert_eq!(new & REMOTE_IRR, old & REMOTE_IRR, "guest wrote remote IRR");
                    }
                    let read = ioapic.mmio_read(IOWIN, 4).unwrap();
                    assert_eq!(read, (new >> shift) as u32);
                    for m in &messages {
                        checker.message(&ioapic, Some(pin), m);
                    }
                } else {
                    assert!(
                        messages.is_empty(),
                        "non-entry register delivered {messages:?}"
                    );
                }
            }
            Action::ReadRegister { index } => {
                ioapic
                    .mmio_write(IOREGSEL, 4, index as u32, |_| unreachable!())
                    .unwrap();
                let value = ioapic.mmio_read(IOWIN, 4).unwrap();
                if let Some(n) = (index as u32).checked_sub(0x10) {
                    let pin = n as usize / 2;
                    let expect = match ioapic.entry(pin) {
                        Ok(rte) => (rte >> if n % 2 == 1 { 32 } else { 0 }) as u32,
                        Err(_) => 0,
                    };
                    assert_eq!(value, expect, "register {index:#x}");
                }
            }
            Action::SetIrq { pin, op } => {
                let op = [LineOp::Assert, LineOp::Deassert, LineOp::Pulse][op as usize % 3];
                let pin = pin as usize;
                let before = ioapic.entry(pin).ok();
                match ioapic.set_irq(pin, op) {
                    Ok(Some(m)) => {
                        let rte = before.unwrap();
                        assert!(
                            rte & (LEVEL | REMOTE_IRR) != LEVEL | REMOTE_IRR || !m.level_trigger,
                            "level entry {pin} delivered again before its EOI"
                        );
                        checker.message(&ioapic, Some(pin), &m);
                    }
                    Ok(None) => assert!(pin < pins),
                    Err(_) => assert!(pin >= pins, "pin {pin} of {pins} refused"),
                }
            }
            Action::SetLevel { pin, high } => {
                let pin = pin as usize;
                match ioapic.set_level(pin, high) {
                    Ok(Some(m)) => checker.message(&ioapic, Some(pin), &m),
                    Ok(None) => assert!(pin < pins),
                    Err(_) => assert!(pin >= pins, "pin {pin} of {pins} refused"),
                }
            }
            Action::Eoi { vector } => {
                let mut messages = Vec::new();
                ioapic.eoi(vector, |m| messages.push(m));
                for m in &messages {
                    assert_eq!(m.vector, vector, "EOI of {vector} re-delivered {m:?}");
                    checker.message(&ioapic, None, m);
                }
                for pin in 0..pins {
                    let rte = ioapic.entry(pin).unwrap();
                    if rte as u8 == vector && rte & REMOTE_IRR != 0 {
                        // Only a re-delivery may leave remote IRR set.
                        assert!(messages.iter().any(|m| m.level_trigger));
                    }
                }
            }
        }
    }
});
