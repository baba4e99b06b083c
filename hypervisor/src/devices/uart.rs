//! A 16550A UART as a guest sees it: divisor latch, IER, IIR with the 16550's interrupt
//! priorities, FCR with 16-byte FIFOs and receive trigger levels, LCR, MCR with loopback, LSR,
//! MSR with delta bits, SCR. The model has no line timing: what the guest writes to THR waits
//! in the transmit FIFO until the owner of the UART takes it ([`Uart::take_tx`]), and bytes
//! arrive through [`Uart::receive`]. Two UARTs joined by [`null_modem`] are the two ends of a
//! cable: bytes move only while the receiver has room, so a slow reader holds the sender's
//! transmitter full (THRE and TEMT clear) instead of losing bytes. The console uses the same
//! model with a transmitter drained into [`ConsoleLine`].

/// The 16550A's FIFO depth, for the transmitter (and the receiver without a bigger buffer).
pub const FIFO_SIZE: usize = 16;
/// The largest receive buffer a scenario may ask for (`VUART_RX_BUF_SIZE`, 256..2560).
pub const RX_BUF_MAX: usize = 2560;

/// Register offsets.
const RBR_THR_DLL: u16 = 0;
const IER_DLM: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

const IER_ERBFI: u8 = 0x01;
const IER_ETBEI: u8 = 0x02;
const IER_ELSI: u8 = 0x04;
const IER_EDSSI: u8 = 0x08;

const IIR_NONE: u8 = 0x01;
const IIR_RLS: u8 = 0x06;
const IIR_RDA: u8 = 0x04;
const IIR_CTI: u8 = 0x0C;
const IIR_THRE: u8 = 0x02;
const IIR_MSR: u8 = 0x00;
const IIR_FIFO_ON: u8 = 0xC0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_CLEAR_TX: u8 = 0x04;

const LCR_DLAB: u8 = 0x80;

pub const MCR_DTR: u8 = 0x01;
pub const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
pub const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
pub const MSR_CTS: u8 = 0x10;
pub const MSR_DSR: u8 = 0x20;
pub const MSR_RI: u8 = 0x40;
pub const MSR_DCD: u8 = 0x80;

/// What a terminal on the console port presents: CTS, DSR and DCD.
pub const TERMINAL_ATTACHED: u8 = MSR_CTS | MSR_DSR | MSR_DCD;

/// A byte ring of at most `N` bytes, limited to `limit` at run time.
struct Ring<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> Ring<N> {
    const fn new() -> Self {
        Ring {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }
    fn push(&mut self, b: u8) {
        self.buf[(self.head + self.len) % N] = b;
        self.len += 1;
    }
    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }
    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }
}

/// One 16550A. `RX` is the receive buffer's capacity; the scenario's size applies within it.
pub struct Uart<const RX: usize> {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo: bool,
    /// FCR bits 7:6: the receive trigger level (1, 4, 8 or 14 bytes) in FIFO mode.
    trigger_bits: u8,
    rx: Ring<RX>,
    /// The receive buffer's size in FIFO mode (used within `1..=RX`); without FIFOs it holds
    /// one byte.
    rx_size: usize,
    tx: Ring<FIFO_SIZE>,
    overrun: bool,
    /// The THRE interrupt source: set when the transmitter empties (or THRE interrupts are
    /// enabled while it is empty), cleared by reading IIR that names it or writing THR.
    thre_int: bool,
    /// The modem inputs from outside (CTS, DSR, RI, DCD in their MSR bits).
    inputs: u8,
    /// MSR delta bits since MSR was last read.
    deltas: u8,
}

impl<const RX: usize> Uart<RX> {
    /// A UART at power-on with a receive buffer of `rx_size` bytes (clamped to `1..=RX`) and
    /// the modem inputs `inputs`. All zero for `new(0, 0)`, so a table of them stays in .bss.
    pub const fn new(rx_size: usize, inputs: u8) -> Self {
        Uart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 0,
            dlm: 0,
            fifo: false,
            trigger_bits: 0,
            rx: Ring::new(),
            rx_size,
            tx: Ring::new(),
            overrun: false,
            thre_int: false,
            inputs: inputs & 0xF0,
            deltas: 0,
        }
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo {
            self.rx_size.clamp(1, RX)
        } else {
            1
        }
    }

    fn trigger(&self) -> usize {
        [1, 4, 8, 14][self.trigger_bits as usize & 3]
    }

    fn tx_capacity(&self) -> usize {
        if self.fifo {
            FIFO_SIZE
        } else {
            1
        }
    }

    fn thr_empty(&self) -> bool {
        self.tx.len == 0
    }

    /// CTS, DSR, RI and DCD as MSR bits 4-7: the inputs, or in loopback the UART's own
    /// outputs (RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD).
    fn modem_status(&self) -> u8 {
        if self.loopback() {
            let m = self.mcr;
            ((m & MCR_RTS) << 3)
                | ((m & MCR_DTR) << 5)
                | ((m & MCR_OUT1) << 4)
                | ((m & MCR_OUT2) << 4)
        } else {
            self.inputs
        }
    }

    /// Records the MSR deltas of a change of the modem status from `old`.
    fn note_status_change(&mut self, old: u8) {
        let new = self.modem_status();
        let changed = old ^ new;
        if changed & MSR_CTS != 0 {
            self.deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            self.deltas |= MSR_DDSR;
        }
        if changed & MSR_DCD != 0 {
            self.deltas |= MSR_DDCD;
        }
        // TERI: the trailing edge of RI only.
        if old & MSR_RI != 0 && new & MSR_RI == 0 {
            self.deltas |= MSR_TERI;
        }
    }

    fn lsr(&self) -> u8 {
        let mut lsr = 0;
        if self.rx.len > 0 {
            lsr |= LSR_DR;
        }
        if self.overrun {
            lsr |= LSR_OE;
        }
        if self.thr_empty() {
            // Bytes leave the shift register at once: TEMT follows THRE.
            lsr |= LSR_THRE | LSR_TEMT;
        }
        lsr
    }

    /// The highest-priority pending interrupt, as IIR bits 3:0.
    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_ELSI != 0 && self.overrun {
            IIR_RLS
        } else if self.ier & IER_ERBFI != 0 && self.rx.len > 0 {
            // No line timing: data below the trigger level is reported at once as a
            // character timeout (nothing more is on its way when the guest looks).
            if !self.fifo || self.rx.len >= self.trigger() {
                IIR_RDA
            } else {
                IIR_CTI
            }
        } else if self.ier & IER_ETBEI != 0 && self.thre_int && self.thr_empty() {
            IIR_THRE
        } else if self.ier & IER_EDSSI != 0 && self.deltas != 0 {
            IIR_MSR
        } else {
            IIR_NONE
        }
    }

    /// The interrupt output as the ISA bus sees it: an interrupt is pending and OUT2 (which
    /// gates the IRQ on PCs) is set. In loopback the output pins are inactive.
    pub fn irq_line(&self) -> bool {
        self.interrupt_id() != IIR_NONE && self.mcr & MCR_OUT2 != 0 && !self.loopback()
    }

    /// An interrupt is pending (what a PCI function's message follows: no OUT2 gate there).
    /// In loopback the output pins are inactive.
    pub fn interrupt_pending(&self) -> bool {
        self.interrupt_id() != IIR_NONE && !self.loopback()
    }

    /// Guest read of register `offset` (0-7).
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.dll,
            RBR_THR_DLL => self.rx.pop().unwrap_or(0),
            IER_DLM if dlab => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => {
                let id = self.interrupt_id();
                if id == IIR_THRE {
                    self.thre_int = false;
                }
                id | if self.fifo { IIR_FIFO_ON } else { 0 }
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let lsr = self.lsr();
                self.overrun = false;
                lsr
            }
            MSR => {
                let msr = self.modem_status() | self.deltas;
                self.deltas = 0;
                msr
            }
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    /// Guest write of `v` to register `offset` (0-7).
    pub fn write(&mut self, offset: u16, v: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.dll = v,
            RBR_THR_DLL => {
                self.thre_int = false;
                if self.loopback() {
                    // Straight from the shift register into the receiver: THR is empty again.
                    self.accept(v);
                    self.thre_int = true;
                } else if self.tx.len < self.tx_capacity() {
                    self.tx.push(v);
                }
                // A write into a full transmitter is lost, as on the hardware.
            }
            IER_DLM if dlab => self.dlm = v,
            IER_DLM => {
                let enabled = v & !self.ier;
                self.ier = v & 0x0F;
                if enabled & IER_ETBEI != 0 && self.thr_empty() {
                    self.thre_int = true;
                }
            }
            IIR_FCR => self.write_fcr(v),
            LCR => self.lcr = v,
            MCR => {
                let old = self.modem_status();
                self.mcr = v & 0x1F;
                self.note_status_change(old);
            }
            SCR => self.scr = v,
            _ => {}
        }
    }

    fn write_fcr(&mut self, v: u8) {
        let enable = v & FCR_ENABLE != 0;
        // Switching the FIFOs on or off empties them.
        let toggled = enable != self.fifo;
        self.fifo = enable;
        if toggled || v & FCR_CLEAR_RX != 0 {
            self.rx.clear();
        }
        if toggled || v & FCR_CLEAR_TX != 0 {
            if !self.thr_empty() {
                self.thre_int = true;
            }
            self.tx.clear();
        }
        self.trigger_bits = v >> 6;
    }

    /// Puts a received byte into the receive buffer; a full buffer loses it (overrun).
    fn accept(&mut self, b: u8) {
        if self.rx.len < self.rx_capacity() {
            self.rx.push(b);
        } else {
            self.overrun = true;
        }
    }

    /// Room for bytes from the line (none in loopback: the serial input is disconnected).
    pub fn rx_room(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity() - self.rx.len
        }
    }

    /// A byte from the line. Returns false (and flags an overrun) if there was no room.
    pub fn receive(&mut self, b: u8) -> bool {
        if self.rx_room() == 0 {
            self.overrun = true;
            return false;
        }
        self.rx.push(b);
        true
    }

    /// Takes the next byte the transmitter sends on the line; THRE rises when it empties.
    pub fn take_tx(&mut self) -> Option<u8> {
        let b = self.tx.pop()?;
        if self.thr_empty() {
            self.thre_int = true;
        }
        Some(b)
    }

    /// The modem outputs the line sees (DTR, RTS in their MCR bits; none in loopback).
    pub fn outputs(&self) -> u8 {
        if self.loopback() {
            0
        } else {
            self.mcr & (MCR_DTR | MCR_RTS)
        }
    }

    /// New modem inputs (CTS, DSR, RI, DCD in MSR bits 4-7).
    pub fn set_inputs(&mut self, inputs: u8) {
        let old = self.modem_status();
        self.inputs = inputs & 0xF0;
        self.note_status_change(old);
    }
}

/// The modem inputs a null-modem cable gives one end from the other end's `outputs`: RTS to
/// CTS, DTR to DSR and DCD.
pub fn null_modem_inputs(outputs: u8) -> u8 {
    let mut inputs = 0;
    if outputs & MCR_RTS != 0 {
        inputs |= MSR_CTS;
    }
    if outputs & MCR_DTR != 0 {
        inputs |= MSR_DSR | MSR_DCD;
    }
    inputs
}

/// Moves what each end transmitted into the other's receive buffer while it has room, and
/// each end's modem outputs to the other's inputs. Bytes never reorder or get lost: what does
/// not fit stays in the sender's transmit FIFO.
pub fn null_modem<const A: usize, const B: usize>(a: &mut Uart<A>, b: &mut Uart<B>) {
    fn transfer<const F: usize, const T: usize>(from: &mut Uart<F>, to: &mut Uart<T>) {
        while to.rx_room() > 0 {
            match from.take_tx() {
                Some(byte) => {
                    to.receive(byte);
                }
                None => break,
            }
        }
    }
    transfer(a, b);
    transfer(b, a);
    a.set_inputs(null_modem_inputs(b.outputs()));
    b.set_inputs(null_modem_inputs(a.outputs()));
}

/// Longest console line printed at once.
pub const LINE_MAX: usize = 200;

/// Bytes a console transmitter sent, collected into lines; a complete line (or a full buffer)
/// is handed to the caller to print with the VM's prefix.
pub struct ConsoleLine {
    line: [u8; LINE_MAX],
    len: usize,
}

impl Default for ConsoleLine {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleLine {
    pub const fn new() -> Self {
        ConsoleLine {
            line: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Adds one byte; returns a line to print if it completed one.
    pub fn push(&mut self, c: u8) -> Option<&[u8]> {
        match c {
            b'\r' => None,
            b'\n' => {
                let n = core::mem::take(&mut self.len);
                Some(&self.line[..n])
            }
            _ => {
                self.line[self.len] = c;
                self.len += 1;
                if self.len == LINE_MAX {
                    self.len = 0;
                    return Some(&self.line[..LINE_MAX]);
                }
                None
            }
        }
    }

    /// Text written since the last complete line (printed when the VM stops).
    pub fn take_partial(&mut self) -> Option<&[u8]> {
        let n = core::mem::take(&mut self.len);
        (n > 0).then(|| &self.line[..n])
    }
}

#[cfg(test)]
mod tests;
