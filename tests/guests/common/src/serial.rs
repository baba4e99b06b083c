//! Polled 16550 on COM1 (the VM's vUART under the hypervisor), shared by all CPUs.

use crate::arch::{inb, outb};
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

pub const COM1: u16 = 0x3F8;
const LSR_THRE: u8 = 1 << 5;
const LSR_DR: u8 = 1 << 0;
/// Polls of LSR before writing anyway: a vUART that never reports THRE must not hang us.
const THRE_SPINS: u32 = 100_000;

static LOCK: AtomicBool = AtomicBool::new(false);

/// Programs 115200 8N1, FIFOs on, interrupts off.
pub fn init() {
    // SAFETY: COM1 belongs to this guest.
    unsafe {
        outb(COM1 + 1, 0x00); // IER: no interrupts
        outb(COM1 + 3, 0x80); // LCR: DLAB
        outb(COM1, 0x01); // divisor 1 = 115200
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8N1
        outb(COM1 + 2, 0xC7); // FIFO on, cleared
        outb(COM1 + 4, 0x03); // DTR | RTS
    }
}

fn put(b: u8) {
    // SAFETY: COM1 belongs to this guest.
    unsafe {
        for _ in 0..THRE_SPINS {
            if inb(COM1 + 5) & LSR_THRE != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        outb(COM1, b);
    }
}

/// A byte the UART received, if any (LSR.DR, then RBR).
pub fn read_byte() -> Option<u8> {
    // SAFETY: COM1 belongs to this guest.
    unsafe { (inb(COM1 + 5) & LSR_DR != 0).then(|| inb(COM1)) }
}

/// Exclusive use of the console until dropped, so lines from different CPUs never mix.
pub struct Console(());

impl Console {
    pub fn lock() -> Console {
        while LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        Console(())
    }

    /// Breaks the lock; only for the panic handler, which may run while it is held.
    pub fn force_unlock() {
        LOCK.store(false, Ordering::Release);
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        LOCK.store(false, Ordering::Release);
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(put);
        Ok(())
    }
}

/// Prints one line (terminated by `\n` only) atomically with respect to other CPUs.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {{
        use core::fmt::Write as _;
        let mut c = $crate::serial::Console::lock();
        let _ = c.write_fmt(format_args!($($arg)*));
        let _ = c.write_str("\n");
    }};
}
