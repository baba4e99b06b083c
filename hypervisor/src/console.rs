//! The physical console: a 16550 UART (port I/O or MMIO, as the board says) behind one lock.
//! Every call writes whole lines while holding the lock, so lines of different pCPUs and VMs
//! never interleave. The shell's line being typed is the one exception: it stays the last
//! line, and every other line erases it first and draws it again after itself.

use crate::arch::x86::{inb, outb};
use acrn_static_config::SerialPort;
use core::fmt::{self, Write};
use spin::Mutex;

#[derive(Clone, Copy)]
enum Uart {
    Pio(u16),
    Mmio { base: u64, width: u8 },
}

impl Uart {
    fn reg_write(self, reg: u8, v: u8) {
        match self {
            Uart::Pio(b) => outb(b + reg as u16, v),
            Uart::Mmio { base, width } => {
                let a = base + reg as u64 * width as u64;
                // SAFETY: the board's UART MMIO window, identity-mapped.
                unsafe {
                    if width == 4 {
                        core::ptr::write_volatile(a as *mut u32, v as u32)
                    } else {
                        core::ptr::write_volatile(a as *mut u8, v)
                    }
                }
            }
        }
    }
    fn reg_read(self, reg: u8) -> u8 {
        match self {
            Uart::Pio(b) => inb(b + reg as u16),
            Uart::Mmio { base, width } => {
                let a = base + reg as u64 * width as u64;
                // SAFETY: as above.
                unsafe {
                    if width == 4 {
                        core::ptr::read_volatile(a as *const u32) as u8
                    } else {
                        core::ptr::read_volatile(a as *const u8)
                    }
                }
            }
        }
    }
    fn init(self) {
        self.reg_write(1, 0x00); // no interrupts
        self.reg_write(3, 0x80); // DLAB
        self.reg_write(0, 0x01); // 115200 baud
        self.reg_write(1, 0x00);
        self.reg_write(3, 0x03); // 8N1
        self.reg_write(2, 0xC7); // FIFOs on, cleared
        self.reg_write(4, 0x0B);
    }
    fn put(self, c: u8) {
        // Bounded wait: a missing UART must not hang the hypervisor.
        for _ in 0..100_000 {
            if self.reg_read(5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.reg_write(0, c);
    }
}

/// Longest line being typed (prompt and text) the console keeps.
const INPUT_MAX: usize = 128;

struct Port {
    uart: Option<Uart>,
    /// The line being typed as shown (without a newline), if one is.
    input: [u8; INPUT_MAX],
    input_len: usize,
    input_shown: bool,
}

impl Port {
    /// Takes the line being typed off the screen (for another line to go out).
    fn hide_input(&mut self) {
        if self.input_shown {
            let _ = self.write_str("\r\x1b[K");
        }
    }

    /// Draws the line being typed again, after another line.
    fn show_input(&mut self) {
        if let (true, Some(u)) = (self.input_shown, self.uart) {
            self.input[..self.input_len].iter().for_each(|&b| u.put(b));
        }
    }
}

impl Write for Port {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(u) = self.uart {
            for c in s.bytes() {
                if c == b'\n' {
                    u.put(b'\r');
                }
                u.put(c);
            }
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Port> = Mutex::new(Port {
    uart: None,
    input: [0; INPUT_MAX],
    input_len: 0,
    input_shown: false,
});

pub fn init(port: Option<SerialPort>) {
    let uart = match port {
        Some(SerialPort::Pio { base, .. }) => Some(Uart::Pio(base)),
        Some(SerialPort::Mmio {
            base, reg_width, ..
        }) => Some(Uart::Mmio {
            base,
            width: reg_width,
        }),
        None => None,
    };
    if let Some(u) = uart {
        u.init();
    }
    CONSOLE.lock().uart = uart;
}

/// Writes `prefix`, the formatted text and a newline as one line.
pub fn line(prefix: &str, args: fmt::Arguments) {
    let mut c = CONSOLE.lock();
    c.hide_input();
    let _ = c.write_str(prefix);
    let _ = c.write_fmt(args);
    let _ = c.write_str("\n");
    c.show_input();
}

/// Shows `prompt`, a space and `text` as the line being typed, drawing only what changed.
pub fn input_line(prompt: &str, text: &str) {
    let mut c = CONSOLE.lock();
    let Some(u) = c.uart else {
        return;
    };
    let mut new = [0u8; INPUT_MAX];
    let mut n = 0;
    for (d, b) in new
        .iter_mut()
        .zip(prompt.bytes().chain([b' ']).chain(text.bytes()))
    {
        *d = b;
        n += 1;
    }
    let kept = if c.input_shown {
        let old = &c.input[..c.input_len];
        let same = old
            .iter()
            .zip(&new[..n])
            .take_while(|(a, b)| a == b)
            .count();
        // Back over what differs, then clear to the end of the line.
        if same < old.len() {
            (same..old.len()).for_each(|_| u.put(0x08));
            let _ = c.write_str("\x1b[K");
        }
        same
    } else {
        0
    };
    new[kept..n].iter().for_each(|&b| u.put(b));
    c.input[..n].copy_from_slice(&new[..n]);
    c.input_len = n;
    c.input_shown = true;
}

/// Ends the line being typed: it stays on the console as a line of its own (written as
/// `prompt text` if none was shown).
pub fn end_input_line(prompt: &str, text: &str) {
    let mut c = CONSOLE.lock();
    if !core::mem::take(&mut c.input_shown) {
        let _ = c.write_fmt(format_args!("{prompt} {text}"));
    }
    c.input_len = 0;
    let _ = c.write_str("\n");
}

/// Writes raw bytes of a VM's line (already prefixed by the caller's `prefix`).
pub fn vm_line(prefix: &str, text: &[u8]) {
    let mut c = CONSOLE.lock();
    c.hide_input();
    let _ = c.write_str(prefix);
    if let Some(u) = c.uart {
        for &b in text {
            // Keep the physical console readable: control bytes become '.'.
            u.put(if b == b'\t' || (0x20..0x7f).contains(&b) {
                b
            } else {
                b'.'
            });
        }
    }
    let _ = c.write_str("\n");
    c.show_input();
}

/// A byte the physical UART received, if any. Never waits: when another pCPU holds the
/// console (writing a line), the byte is taken at the next poll.
pub fn read_byte() -> Option<u8> {
    let c = CONSOLE.try_lock()?;
    let u = c.uart?;
    (u.reg_read(5) & 0x01 != 0).then(|| u.reg_read(0))
}

/// For the exception path: take the lock if it frees up soon, else write anyway (the holder may
/// be this very CPU).
pub fn emergency(args: fmt::Arguments) {
    for _ in 0..1_000_000 {
        if let Some(mut c) = CONSOLE.try_lock() {
            let _ = c.write_fmt(args);
            return;
        }
        core::hint::spin_loop();
    }
    // SAFETY: deliberately bypasses the lock; output may interleave, but the dump gets out.
    unsafe { CONSOLE.force_unlock() };
    let _ = CONSOLE.lock().write_fmt(args);
}

/// A hypervisor message: one line prefixed `[hv] `.
#[macro_export]
macro_rules! hvlog {
    ($($t:tt)*) => { $crate::console::line("[hv] ", format_args!($($t)*)) };
}
