//! A 16550A UART (COM1 at 0x3F8, IRQ 4 for `-l com1,stdio`): transmit goes straight to the
//! backend, received bytes wait in a 16-byte-style FIFO (unbounded here, drained by the
//! guest), interrupts for received data and transmitter-empty, loopback as the Linux 8250
//! driver probes it.

use super::pci::{Bar, BarKind, ConfigSpace, PciFunction, PciId};
use std::collections::VecDeque;
use std::io::Write;

/// COM1..COM4: base port and ISA IRQ, as ACRN's LPC bridge places them.
pub const COM_PORTS: [(u16, u32); 4] = [(0x3F8, 4), (0x2F8, 3), (0x3E8, 6), (0x2E8, 7)];

const IER_RDI: u8 = 1 << 0;
const IER_THRI: u8 = 1 << 1;
const IIR_NONE: u8 = 0x01;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_FIFO: u8 = 0xC0;
const LCR_DLAB: u8 = 1 << 7;
const LSR_DR: u8 = 1 << 0;
const LSR_THRE: u8 = 1 << 5;
const LSR_TEMT: u8 = 1 << 6;
const MCR_DTR: u8 = 1 << 0;
const MCR_RTS: u8 = 1 << 1;
const MCR_OUT1: u8 = 1 << 2;
const MCR_OUT2: u8 = 1 << 3;
const MCR_LOOP: u8 = 1 << 4;
const MSR_CTS: u8 = 1 << 4;
const MSR_DSR: u8 = 1 << 5;
const MSR_RI: u8 = 1 << 6;
const MSR_DCD: u8 = 1 << 7;

/// The UART's state.
pub struct Uart16550 {
    out: Box<dyn Write + Send>,
    rx: VecDeque<u8>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    fcr: u8,
    dll: u8,
    dlm: u8,
    thre_pending: bool,
    irq_level: bool,
}

impl Uart16550 {
    /// A UART transmitting to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            rx: VecDeque::new(),
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            fcr: 0,
            // 115200 baud.
            dll: 1,
            dlm: 0,
            thre_pending: false,
            irq_level: false,
        }
    }

    /// Queues bytes from the backend for the guest.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.rx.extend(bytes);
    }

    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_RDI != 0 && !self.rx.is_empty() {
            IIR_RDI
        } else if self.ier & IER_THRI != 0 && self.thre_pending {
            IIR_THRI
        } else {
            IIR_NONE
        }
    }

    /// The IRQ line changes to apply: `Some(level)` when it changed. OUT2 gates the line to
    /// the interrupt controller, as on PCs.
    pub fn take_irq_change(&mut self) -> Option<bool> {
        let level = self.interrupt_id() != IIR_NONE && self.mcr & MCR_OUT2 != 0;
        (level != self.irq_level).then(|| {
            self.irq_level = level;
            level
        })
    }

    /// A read of register `offset` (0..8).
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll,
            0 => self.rx.pop_front().unwrap_or(0),
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => {
                let id = self.interrupt_id();
                // Reading IIR while it reports THRE acknowledges it.
                if id == IIR_THRI {
                    self.thre_pending = false;
                }
                let fifo = if self.fcr & 1 != 0 { IIR_FIFO } else { 0 };
                id | fifo
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
                dr | LSR_THRE | LSR_TEMT
            }
            6 => {
                if self.mcr & MCR_LOOP != 0 {
                    let m = self.mcr;
                    let bit = |set: bool, b: u8| if set { b } else { 0 };
                    bit(m & MCR_RTS != 0, MSR_CTS)
                        | bit(m & MCR_DTR != 0, MSR_DSR)
                        | bit(m & MCR_OUT1 != 0, MSR_RI)
                        | bit(m & MCR_OUT2 != 0, MSR_DCD)
                } else {
                    MSR_DCD | MSR_DSR | MSR_CTS
                }
            }
            7 => self.scr,
            _ => 0xFF,
        }
    }

    /// A write of `value` to register `offset` (0..8).
    pub fn write(&mut self, offset: u16, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll = value,
            0 => {
                if self.mcr & MCR_LOOP != 0 {
                    self.rx.push_back(value);
                } else {
                    // A console that cannot be written must not stop the guest.
                    let _ = self.out.write_all(&[value]);
                    let _ = self.out.flush();
                }
                self.thre_pending = true;
            }
            1 if dlab => self.dlm = value,
            1 => {
                let enabling_thri = value & IER_THRI != 0 && self.ier & IER_THRI == 0;
                self.ier = value & 0x0F;
                if enabling_thri {
                    self.thre_pending = true;
                }
            }
            2 => {
                if value & 0x02 != 0 {
                    self.rx.clear();
                }
                self.fcr = value & 0xC9;
            }
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1F,
            7 => self.scr = value,
            _ => {}
        }
    }
}

/// ACRN's PCI UART with a device-model backend (`-s N,uart,BACKEND`): a 16550 in an 8-port
/// I/O BAR of a 9710:9900 function, interrupting through INTx.
pub struct PciUart {
    cfg: ConfigSpace,
    uart: Uart16550,
}

/// Size of the PCI UART's I/O BAR.
pub const PCI_UART_BAR: u32 = 8;

impl PciUart {
    /// The function with its BAR at `io_base` and INTx line `irq_line`.
    pub fn new(out: Box<dyn Write + Send>, io_base: u16, irq_line: u8) -> Self {
        let mut cfg = ConfigSpace::new(PciId {
            vendor: 0x9710,
            device: 0x9900,
            class: 0x07_00_00,
            revision: 0,
            subsys_vendor: 0,
            subsys: 0,
        });
        cfg.set_bar(
            0,
            Bar {
                kind: BarKind::Io,
                size: PCI_UART_BAR,
            },
            u32::from(io_base),
        );
        cfg.set_intx(1, irq_line);
        Self {
            cfg,
            uart: Uart16550::new(out),
        }
    }
}

impl PciFunction for PciUart {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.cfg
    }
    fn bar_read(&mut self, bar: usize, offset: u64, size: u8) -> u64 {
        // Byte registers only, as ACRN's.
        if bar == 0 && size == 1 {
            u64::from(self.uart.read(offset as u16))
        } else {
            0xFF
        }
    }
    fn bar_write(&mut self, bar: usize, offset: u64, size: u8, value: u64) {
        if bar == 0 && size == 1 {
            self.uart.write(offset as u16, value as u8);
        }
    }
    fn take_intx(&mut self) -> Option<bool> {
        self.uart.take_irq_change()
    }
    fn host_input(&mut self, bytes: &[u8]) {
        self.uart.receive(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_receive_and_interrupts() {
        let sink = Sink::default();
        let mut u = Uart16550::new(Box::new(sink.clone()));
        u.write(4, MCR_OUT2 | MCR_DTR | MCR_RTS);
        for b in b"hi\n" {
            u.write(0, *b);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        assert_eq!(u.take_irq_change(), None, "no interrupt enabled");
        assert_eq!(u.read(5) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);

        u.write(1, IER_RDI);
        u.receive(b"ab");
        assert_eq!(u.read(5) & LSR_DR, LSR_DR);
        assert_eq!(u.take_irq_change(), Some(true));
        assert_eq!(u.read(2) & 0x0F, IIR_RDI);
        assert_eq!(u.read(0), b'a');
        assert_eq!(u.read(0), b'b');
        assert_eq!(u.read(5) & LSR_DR, 0);
        assert_eq!(u.take_irq_change(), Some(false));

        // THRE: enabling it raises one interrupt, acknowledged by reading IIR.
        u.write(1, IER_RDI | IER_THRI);
        assert_eq!(u.take_irq_change(), Some(true));
        assert_eq!(u.read(2) & 0x0F, IIR_THRI);
        assert_eq!(u.read(2) & 0x0F, IIR_NONE);
        assert_eq!(u.take_irq_change(), Some(false));
        u.write(0, b'x');
        assert_eq!(u.take_irq_change(), Some(true));
    }

    #[test]
    fn pci_uart_function() {
        let sink = Sink::default();
        let mut f = PciUart::new(Box::new(sink.clone()), 0x2100, 18);
        assert_eq!(f.config().read(0, 4), 0x9900_9710);
        assert_eq!(f.config().read(0x10, 4), 0x2101);
        assert_eq!(f.config().read(0x3C, 2), 0x0112, "INTA, line 18");
        f.bar_write(0, 4, 1, u64::from(MCR_OUT2));
        f.bar_write(0, 1, 1, u64::from(IER_RDI));
        f.host_input(b"q");
        assert_eq!(f.take_intx(), Some(true));
        assert_eq!(f.bar_read(0, 0, 1), u64::from(b'q'));
        assert_eq!(f.take_intx(), Some(false));
        f.bar_write(0, 0, 1, u64::from(b'!'));
        assert_eq!(&*sink.0.lock().unwrap(), b"!");
        assert_eq!(f.bar_read(0, 0, 2), 0xFF, "byte access only");
    }

    #[test]
    fn out2_gates_the_line() {
        let mut u = Uart16550::new(Box::new(std::io::sink()));
        u.write(1, IER_RDI);
        u.receive(b"z");
        assert_eq!(u.take_irq_change(), None);
        u.write(4, MCR_OUT2);
        assert_eq!(u.take_irq_change(), Some(true));
    }

    #[test]
    fn divisor_scratch_and_loopback_as_linux_probes() {
        let sink = Sink::default();
        let mut u = Uart16550::new(Box::new(sink.clone()));
        u.write(3, LCR_DLAB);
        u.write(0, 0x0C);
        u.write(1, 0x00);
        assert_eq!((u.read(0), u.read(1)), (0x0C, 0));
        u.write(3, 0x03);
        u.write(7, 0xA5);
        assert_eq!(u.read(7), 0xA5);
        u.write(1, 0x0F);
        assert_eq!(u.read(1), 0x0F);
        u.write(4, MCR_LOOP | MCR_OUT1 | MCR_OUT2 | MCR_RTS);
        assert_eq!(u.read(6) & 0xF0, MSR_RI | MSR_DCD | MSR_CTS);
        u.write(0, 0x55);
        assert_eq!(u.read(0), 0x55, "looped back");
        assert!(sink.0.lock().unwrap().is_empty());
        u.write(2, 0x07);
        assert_eq!(u.read(2) & IIR_FIFO, IIR_FIFO);
    }
}
