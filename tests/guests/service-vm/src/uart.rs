//! The post-launched VM's console: a 16550 emulated from I/O requests. Output bytes are
//! collected into lines; the device model prints each as `[<VM name>] <line>`. There is no
//! input: the receiver is always empty.

/// Longest line kept; a longer one is emitted in pieces of this size.
pub const LINE_MAX: usize = 200;

const LSR_THRE_TEMT: u8 = 0x60;
const LCR_DLAB: u8 = 0x80;

/// Register state of one 16550.
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    line: [u8; LINE_MAX],
    len: usize,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    pub const fn new() -> Self {
        Self {
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 1,
            dlm: 0,
            line: [0; LINE_MAX],
            len: 0,
        }
    }

    /// A register read at `offset` (0..8) from the base port.
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll,
            0 => 0, // receiver empty
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => 0xC1, // FIFOs enabled, no interrupt pending
            3 => self.lcr,
            4 => self.mcr,
            5 => LSR_THRE_TEMT, // transmitter always ready, no data
            6 => 0xB0,          // CTS, DSR, DCD
            7 => self.scr,
            _ => 0xFF,
        }
    }

    /// A register write; calls `emit` with each completed line (without its newline).
    pub fn write(&mut self, offset: u16, value: u8, emit: &mut dyn FnMut(&[u8])) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll = value,
            0 => self.put(value, emit),
            1 if dlab => self.dlm = value,
            1 => self.ier = value & 0x0F,
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1F,
            7 => self.scr = value,
            _ => {}
        }
    }

    fn put(&mut self, b: u8, emit: &mut dyn FnMut(&[u8])) {
        match b {
            b'\n' => {
                emit(&self.line[..self.len]);
                self.len = 0;
            }
            b'\r' => {}
            _ => {
                if self.len == LINE_MAX {
                    emit(&self.line[..self.len]);
                    self.len = 0;
                }
                self.line[self.len] = if (0x20..0x7F).contains(&b) { b } else { b'?' };
                self.len += 1;
            }
        }
    }

    /// Hands out a partial last line (before a reset or destroy).
    pub fn flush(&mut self, emit: &mut dyn FnMut(&[u8])) {
        if self.len > 0 {
            emit(&self.line[..self.len]);
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn run(u: &mut Uart, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            u.write(0, b, &mut |l| {
                out.push(String::from_utf8(l.to_vec()).unwrap())
            });
        }
        out
    }

    #[test]
    fn lines_are_split_and_cleaned() {
        let mut u = Uart::new();
        assert_eq!(run(&mut u, b"hello\r\nwor"), ["hello"]);
        assert_eq!(run(&mut u, b"ld\x1b!\n"), ["world?!"]);
        let long = [b'a'; LINE_MAX + 5];
        let out = run(&mut u, &long);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), LINE_MAX);
        let mut rest = Vec::new();
        u.flush(&mut |l| rest.push(l.len()));
        assert_eq!(rest, [5]);
    }

    #[test]
    fn registers_behave_like_a_16550() {
        let mut u = Uart::new();
        let mut none = |_: &[u8]| panic!("no output expected");
        assert_eq!(u.read(5) & 0x20, 0x20, "THRE so polled drivers never wait");
        u.write(3, 0x80, &mut none); // DLAB
        u.write(0, 0x01, &mut none); // divisor low, not data
        u.write(1, 0x00, &mut none);
        assert_eq!((u.read(0), u.read(1)), (1, 0));
        u.write(3, 0x03, &mut none);
        u.write(7, 0x5A, &mut none);
        assert_eq!(u.read(7), 0x5A);
        assert_eq!(u.read(3), 0x03);
        assert_eq!(u.read(0), 0);
        assert_eq!(u.read(9), 0xFF);
    }
}
