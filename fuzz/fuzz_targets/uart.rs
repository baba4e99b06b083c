//! Two 16550A models (`devices::uart`) joined by the null-modem cable, driven by a sequence of
//! register reads and writes on either end and cable updates. What must hold: nothing panics;
//! IIR names one of the 16550's interrupt causes (or none) with the FIFO bits matching FCR;
//! LSR's TEMT follows THRE; the interrupt line is up only with OUT2 set and loopback off;
//! and what an end reads from the line is, in order, a subsequence of what the other end
//! wrote to THR (bytes may be dropped only by writing into a full transmitter).
#![no_main]

use acrn_hypervisor::devices::uart::{null_modem, Uart, MCR_OUT2};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Action {
    Read {
        end: bool,
        offset: u8,
    },
    Write {
        end: bool,
        offset: u8,
        value: u8,
    },
    /// LSR, then RBR if LSR said data is ready.
    Receive {
        end: bool,
    },
    Cable,
}

type End = Uart<64>;

struct Side {
    uart: End,
    /// Bytes written to THR (DLAB clear) and not yet matched at the other end.
    sent: Vec<u8>,
    lcr: u8,
    mcr: u8,
    fifo: bool,
}

fuzz_target!(|input: (u8, u8, Vec<Action>)| {
    let (size_a, size_b, actions) = input;
    let mut sides = [size_a, size_b].map(|s| Side {
        uart: End::new(s as usize, 0),
        sent: Vec::new(),
        lcr: 0,
        mcr: 0,
        fifo: false,
    });
    for action in actions.iter().take(2048) {
        match *action {
            Action::Read { end, offset } => {
                let s = &mut sides[end as usize];
                let offset = u16::from(offset % 8);
                let v = s.uart.read(offset);
                match offset {
                    2 => {
                        assert!(
                            matches!(v & 0x0F, 0x01 | 0x06 | 0x04 | 0x0C | 0x02 | 0x00),
                            "IIR {v:#x}"
                        );
                        assert_eq!(v & 0xC0 != 0, s.fifo, "IIR FIFO bits {v:#x}");
                        assert_eq!(v & 0x30, 0, "IIR reserved bits {v:#x}");
                    }
                    5 => assert_eq!(v & 0x20 != 0, v & 0x40 != 0, "LSR {v:#x}"),
                    _ => {}
                }
            }
            Action::Write { end, offset, value } => {
                let s = &mut sides[end as usize];
                // Loopback keeps bytes off the line; the unit tests cover it.
                let offset = u16::from(offset % 8);
                let value = if offset == 4 { value & !0x10 } else { value };
                match offset {
                    0 if s.lcr & 0x80 == 0 => s.sent.push(value),
                    2 => s.fifo = value & 1 != 0,
                    3 => s.lcr = value,
                    4 => s.mcr = value & 0x1F,
                    _ => {}
                }
                s.uart.write(offset, value);
            }
            Action::Receive { end } => {
                let [a, b] = &mut sides;
                let (me, peer) = if end { (b, a) } else { (a, b) };
                if me.lcr & 0x80 == 0 && me.uart.read(5) & 1 != 0 {
                    let byte = me.uart.read(0);
                    // The first match in what the peer sent, in order: skipped bytes were
                    // dropped by a full transmitter (or a FIFO reset).
                    let at = peer.sent.iter().position(|&x| x == byte);
                    assert!(at.is_some(), "received {byte:#x}, never sent");
                    peer.sent.drain(..=at.unwrap_or_default());
                }
            }
            Action::Cable => {
                let [a, b] = &mut sides;
                null_modem(&mut a.uart, &mut b.uart);
            }
        }
        for s in &sides {
            if s.uart.irq_line() {
                assert!(s.mcr & MCR_OUT2 != 0, "IRQ up without OUT2");
            }
        }
    }
});
