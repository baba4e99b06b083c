//! Polled 16550 on COM1 (the VM's vUART under the hypervisor), shared by all CPUs; or, after
//! [`use_window`], the same registers in a memory window (a PCI console vUART's BAR0).

use crate::arch::{inb, outb};
use core::fmt;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const COM1: u16 = 0x3F8;
const LSR_THRE: u8 = 1 << 5;
const LSR_DR: u8 = 1 << 0;
/// Polls of LSR before writing anyway: a vUART that never reports THRE must not hang us.
const THRE_SPINS: u32 = 100_000;

static LOCK: AtomicBool = AtomicBool::new(false);
/// The registers' memory window, or 0 for COM1.
static WINDOW: AtomicU64 = AtomicU64::new(0);

fn rd(reg: u16) -> u8 {
    match WINDOW.load(Ordering::Relaxed) {
        // SAFETY: COM1 belongs to this guest.
        0 => unsafe { inb(COM1 + reg) },
        // SAFETY: the window given to `use_window`, identity-mapped, byte registers.
        w => unsafe { read_volatile((w + u64::from(reg)) as *const u8) },
    }
}

fn wr(reg: u16, v: u8) {
    match WINDOW.load(Ordering::Relaxed) {
        // SAFETY: as for `rd`.
        0 => unsafe { outb(COM1 + reg, v) },
        // SAFETY: as for `rd`.
        w => unsafe { write_volatile((w + u64::from(reg)) as *mut u8, v) },
    }
}

/// Programs 115200 8N1, FIFOs on, interrupts off.
pub fn init() {
    wr(1, 0x00); // IER: no interrupts
    wr(3, 0x80); // LCR: DLAB
    wr(0, 0x01); // divisor 1 = 115200
    wr(1, 0x00);
    wr(3, 0x03); // 8N1
    wr(2, 0xC7); // FIFO on, cleared
    wr(4, 0x03); // DTR | RTS
}

/// From now on the console is the 16550 whose registers are the bytes at `window` (one
/// apart); programmed as [`init`] does.
pub fn use_window(window: u64) {
    let _held = Console::lock();
    WINDOW.store(window, Ordering::SeqCst);
    init();
}

fn put(b: u8) {
    for _ in 0..THRE_SPINS {
        if rd(5) & LSR_THRE != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    wr(0, b);
}

/// A byte the UART received, if any (LSR.DR, then RBR).
pub fn read_byte() -> Option<u8> {
    (rd(5) & LSR_DR != 0).then(|| rd(0))
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
