//! The virtual 8259A pair (`devices::pic`) driven by a sequence of port reads and writes
//! (ICW1-4, OCW1-3, poll, ELCR) and IRQ line changes, with INTA cycles. What must hold:
//! nothing panics; the vector `output` announces is the one `acknowledge` returns; with no
//! request `acknowledge` answers the master's spurious vector (IRQ 7); every vector lies in
//! the 8-vector range the guest programmed (ICW2) for the master or the slave; a poll read
//! is 0 or 0x80 | IRQ; a port the pair does not decode reads 0xFF.
#![no_main]

use acrn_hypervisor::devices::irq::LineOp;
use acrn_hypervisor::devices::pic::{Vpic, MASTER_COMMAND, MASTER_DATA, SLAVE_COMMAND, SLAVE_DATA};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

const PORTS: [u16; 7] = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x80];

#[derive(Debug, Arbitrary)]
enum Action {
    Read { port: u8 },
    Write { port: u8, value: u8 },
    SetIrq { irq: u8, op: u8 },
    Inta,
}

/// The vector bases the guest programmed, followed from the ICW sequence.
#[derive(Default)]
struct Bases {
    base: [u8; 2],
    expect_icw2: [bool; 2],
}

impl Bases {
    fn write(&mut self, port: u16, value: u8) {
        let (chip, command) = match port {
            MASTER_COMMAND => (0, true),
            MASTER_DATA => (0, false),
            SLAVE_COMMAND => (1, true),
            SLAVE_DATA => (1, false),
            _ => return,
        };
        if command {
            if value & 0x10 != 0 {
                self.expect_icw2[chip] = true;
            }
        } else if self.expect_icw2[chip] {
            self.base[chip] = value & 0xF8;
            self.expect_icw2[chip] = false;
        }
    }

    fn contains(&self, vector: u8) -> bool {
        self.base.contains(&(vector & 0xF8))
    }
}

fuzz_target!(|actions: Vec<Action>| {
    let mut pic = Vpic::new();
    let mut bases = Bases::default();
    for action in actions.iter().take(1024) {
        match *action {
            Action::Read { port } => {
                let port = PORTS[port as usize % PORTS.len()];
                let value = pic.io_read(port);
                if !Vpic::claims_port(port) {
                    assert_eq!(value, 0xFF, "undecoded port {port:#x}");
                }
            }
            Action::Write { port, value } => {
                let port = PORTS[port as usize % PORTS.len()];
                pic.io_write(port, value);
                bases.write(port, value);
            }
            Action::SetIrq { irq, op } => {
                let op = [LineOp::Assert, LineOp::Deassert, LineOp::Pulse][op as usize % 3];
                let irq = irq % 18;
                let result = pic.set_irq(irq, op);
                assert_eq!(
                    result.is_err(),
                    irq >= 16 || irq == 2,
                    "IRQ {irq}: {result:?}"
                );
            }
            Action::Inta => {
                let announced = pic.output();
                let vector = pic.acknowledge();
                match announced {
                    Some(v) => assert_eq!(vector, v, "output announced {v}, INTA gave {vector}"),
                    None => assert_eq!(vector, bases.base[0] | 7, "INTA with no request"),
                }
                assert!(
                    bases.contains(vector),
                    "vector {vector:#x} outside {:?}",
                    bases.base
                );
            }
        }
        if let Some(v) = pic.output() {
            assert!(bases.contains(v), "output {v:#x} outside {:?}", bases.base);
        }
    }
});
