//! A 16550 UART as the guest sees it at its console port. Transmitted bytes are collected into
//! lines; a complete line (or a full buffer) is handed to the caller to print with the VM's
//! prefix. There is no input source yet, so the receiver stays empty.

pub const LINE_MAX: usize = 200;

/// Register offsets.
const RBR_THR_DLL: u16 = 0;
const IER_DLM: u16 = 1;
const IIR_FCR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;
const SCR: u16 = 7;

const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
const LSR_THRE_TEMT: u8 = 0x60;

pub struct Vuart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo: bool,
    /// Set when the transmitter became empty with THRE interrupts on, until IIR is read.
    thre_pending: bool,
    line: [u8; LINE_MAX],
    len: usize,
}

impl Default for Vuart {
    fn default() -> Self {
        Self::new()
    }
}

impl Vuart {
    pub const fn new() -> Self {
        Vuart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 1,
            dlm: 0,
            fifo: false,
            thre_pending: false,
            line: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Guest read of register `offset` (0-7).
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.dll,
            RBR_THR_DLL => 0,
            IER_DLM if dlab => self.dlm,
            IER_DLM => self.ier,
            IIR_FCR => {
                let fifo = if self.fifo { 0xC0 } else { 0 };
                if self.thre_pending && self.ier & 0x02 != 0 {
                    self.thre_pending = false;
                    fifo | 0x02
                } else {
                    fifo | 0x01
                }
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => LSR_THRE_TEMT,
            MSR => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
                    let m = self.mcr;
                    ((m & 1) << 5) | ((m & 2) << 3) | ((m & 4) << 4) | ((m & 8) << 4)
                } else {
                    0xB0 // DCD, DSR, CTS: a terminal is attached
                }
            }
            SCR => self.scr,
            _ => 0xFF,
        }
    }

    /// Guest write; returns a completed line to print, if this write ended one.
    pub fn write(&mut self, offset: u16, v: u8) -> Option<&[u8]> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.dll = v,
            RBR_THR_DLL => {
                self.thre_pending = true;
                if self.mcr & MCR_LOOP != 0 {
                    return None; // looped back to the (absent) receiver, not transmitted
                }
                return self.push(v);
            }
            IER_DLM if dlab => self.dlm = v,
            IER_DLM => {
                self.ier = v & 0x0F;
                self.thre_pending = v & 0x02 != 0;
            }
            IIR_FCR => self.fifo = v & 1 != 0,
            LCR => self.lcr = v,
            MCR => self.mcr = v & 0x1F,
            SCR => self.scr = v,
            _ => {}
        }
        None
    }

    fn push(&mut self, c: u8) -> Option<&[u8]> {
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

    /// The level of the UART's interrupt output: a THR-empty interrupt is pending and enabled
    /// (the receiver never has data).
    pub fn interrupt_pending(&self) -> bool {
        self.thre_pending && self.ier & 0x02 != 0
    }

    /// Text written since the last complete line (printed when the VM stops).
    pub fn take_partial(&mut self) -> Option<&[u8]> {
        let n = core::mem::take(&mut self.len);
        (n > 0).then(|| &self.line[..n])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn interrupt_output_follows_thr_empty() {
        let mut u = Vuart::new();
        assert!(!u.interrupt_pending());
        u.write(1, 0x02); // IER: THR empty
        assert!(u.interrupt_pending());
        assert_eq!(u.read(2) & 0x0F, 0x02);
        assert!(!u.interrupt_pending(), "reading IIR acknowledges it");
        u.write(0, b'x');
        assert!(
            u.interrupt_pending(),
            "the byte left at once: THR empty again"
        );
        u.write(1, 0);
        assert!(!u.interrupt_pending(), "disabled");
    }

    use super::*;

    #[test]
    fn lines_are_collected() {
        let mut u = Vuart::new();
        for &c in b"hello\r" {
            assert_eq!(u.write(0, c), None);
        }
        assert_eq!(u.write(0, b'\n'), Some(&b"hello"[..]));
        assert_eq!(u.write(0, b'\n'), Some(&b""[..]));
        u.write(0, b'x');
        assert_eq!(u.take_partial(), Some(&b"x"[..]));
        assert_eq!(u.take_partial(), None);
    }

    #[test]
    fn long_lines_are_split() {
        let mut u = Vuart::new();
        for _ in 0..LINE_MAX - 1 {
            assert!(u.write(0, b'a').is_none());
        }
        assert_eq!(u.write(0, b'a').map(|l| l.len()), Some(LINE_MAX));
    }

    #[test]
    fn registers() {
        let mut u = Vuart::new();
        assert_eq!(u.read(5), 0x60, "transmitter always empty");
        u.write(3, 0x83); // DLAB
        u.write(0, 0x0C);
        u.write(1, 0x00);
        assert_eq!((u.read(0), u.read(1)), (0x0C, 0x00));
        assert_eq!(u.write(0, b'\n'), None, "DLAB set: divisor, not data");
        u.write(3, 0x03);
        assert_eq!(u.read(3), 0x03);
        u.write(7, 0x5A);
        assert_eq!(u.read(7), 0x5A);
        assert_eq!(u.read(2), 0x01, "no interrupt pending, FIFO off");
        u.write(2, 0xC7);
        assert_eq!(u.read(2) & 0xC0, 0xC0, "16550A FIFO signature");
        u.write(1, 0x02);
        assert_eq!(u.read(1), 0x02);
        assert_eq!(u.read(2) & 0x0F, 0x02, "THR empty interrupt identified");
        assert_eq!(u.read(2) & 0x0F, 0x01, "and cleared by reading IIR");
        u.write(4, 0x1F); // loopback with all outputs
        assert_eq!(u.read(6) & 0xF0, 0xF0);
        u.write(4, 0x10);
        assert_eq!(u.read(6) & 0xF0, 0x00);
        assert_eq!(
            u.write(0, b'\n'),
            None,
            "loopback bytes are not transmitted"
        );
    }
}
