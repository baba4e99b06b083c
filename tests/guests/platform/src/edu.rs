//! `passthrough device=1234:11e8`: QEMU's `edu` device given to this VM (`pci_devs`), a
//! conventional PCI function that on the QEMU boards sits behind a PCIe-to-PCI bridge, so the
//! IOMMU sees its requests with the bridge's alias (secondary bus, devfn 0), not its own BDF.
//! The guest checks its registers (identification, liveness, factorial), its MSI (raised
//! through the interrupt-raise register), a DMA round trip through the device's buffer (a page
//! of this VM's memory read into the device, written back to another page, with the
//! completion MSI), and a DMA read aimed outside this VM's memory, which the IOMMU must block:
//! what the device read there comes back through its buffer, so the guest counts the non-zero
//! bytes of it.

use crate::idt::count;
use crate::passthrough::{aim_msi, outside_gpa};
use crate::pci::{mmio_read32, mmio_write32, Device};
use crate::spin_ms;
use crate::victim::{prepare_cpu, set_ap_mode, AP_MODE_HALT};
use core::arch::asm;
use guest_common::platform::{Platform, Verdict};
use guest_common::println;

pub const EDU: u32 = 0x11E8_1234;

/// Registers (QEMU's docs/specs/edu.rst).
const IDENTIFICATION: u64 = 0x00;
const LIVENESS: u64 = 0x04;
const FACTORIAL: u64 = 0x08;
const STATUS: u64 = 0x20;
const STATUS_COMPUTING: u32 = 1 << 0;
const INTERRUPT_STATUS: u64 = 0x24;
const INTERRUPT_RAISE: u64 = 0x60;
const INTERRUPT_ACK: u64 = 0x64;
const DMA_SOURCE: u64 = 0x80;
const DMA_DESTINATION: u64 = 0x88;
const DMA_COUNT: u64 = 0x90;
const DMA_COMMAND: u64 = 0x98;
const DMA_RUN: u32 = 1 << 0;
/// Direction: from the device's buffer to memory (clear: from memory to the buffer).
const DMA_TO_MEMORY: u32 = 1 << 1;
const DMA_INTERRUPT: u32 = 1 << 2;
/// The interrupt status bit a finished DMA raises.
const DMA_DONE: u32 = 0x100;
/// The device's DMA buffer, as its side of a transfer names it.
const BUFFER: u64 = 0x4_0000;
const PAGE: usize = 4096;
/// Bytes per DMA: half the device's 4 KiB buffer (QEMU's range check refuses a transfer that
/// ends at the buffer's last byte, and takes the machine down).
const TRANSFER: usize = PAGE / 2;
const VECTOR: u8 = 0x5A;
const ROUNDS: u32 = 3;

#[repr(C, align(4096))]
struct Pages {
    pattern: [u8; PAGE],
    back: [u8; PAGE],
    zeros: [u8; PAGE],
}

static mut PAGES: Pages = Pages {
    pattern: [0; PAGE],
    back: [0; PAGE],
    zeros: [0; PAGE],
};

fn pages() -> *mut Pages {
    core::ptr::addr_of_mut!(PAGES)
}

/// Runs one DMA of [`TRANSFER`] bytes between `memory` and the device's buffer and waits (the device
/// starts it 100 ms later) until it is done; whether it finished within a second.
fn dma(bar0: u64, khz: u64, memory: u64, to_memory: bool) -> bool {
    let (source, destination) = if to_memory {
        (BUFFER, memory)
    } else {
        (memory, BUFFER)
    };
    mmio_write32(bar0 + DMA_SOURCE, source as u32);
    mmio_write32(bar0 + DMA_SOURCE + 4, (source >> 32) as u32);
    mmio_write32(bar0 + DMA_DESTINATION, destination as u32);
    mmio_write32(bar0 + DMA_DESTINATION + 4, (destination >> 32) as u32);
    mmio_write32(bar0 + DMA_COUNT, TRANSFER as u32);
    let direction = if to_memory { DMA_TO_MEMORY } else { 0 };
    mmio_write32(bar0 + DMA_COMMAND, DMA_RUN | DMA_INTERRUPT | direction);
    for _ in 0..1000 {
        if mmio_read32(bar0 + DMA_COMMAND) & DMA_RUN == 0 {
            return true;
        }
        spin_ms(khz, 1);
    }
    false
}

/// Waits up to `ms` for `vector` to have arrived `n` times.
fn arrived(khz: u64, ms: u64, n: u32) -> bool {
    for _ in 0..ms {
        if count(0, VECTOR) >= n {
            return true;
        }
        spin_ms(khz, 1);
    }
    count(0, VECTOR) >= n
}

pub fn run(d: &Device, p: &Platform, khz: u64, verdict: &mut Verdict) {
    set_ap_mode(AP_MODE_HALT);
    let (bar0, size0) = d.size_bar(0, false);
    println!("passthrough: edu: BAR0 {:#x} size {:#x}", bar0, size0);
    verdict.check(size0 == 0x10_0000, "BAR0 is not edu's 1 MiB");
    d.set_cfg(4, 0x6);
    let id = mmio_read32(bar0 + IDENTIFICATION);
    mmio_write32(bar0 + LIVENESS, 0x1234_5678);
    let alive = mmio_read32(bar0 + LIVENESS) == !0x1234_5678;
    mmio_write32(bar0 + FACTORIAL, 10);
    for _ in 0..1000 {
        if mmio_read32(bar0 + STATUS) & STATUS_COMPUTING == 0 {
            break;
        }
        spin_ms(khz, 1);
    }
    let factorial = mmio_read32(bar0 + FACTORIAL);
    println!(
        "passthrough: edu: identification {:#x}, liveness {}, 10! = {}",
        id, alive, factorial
    );
    verdict.check(
        id & 0xFF == 0xED && alive && factorial == 3_628_800,
        "edu's registers do not answer",
    );

    let Some(at) = d.capability(0x05) else {
        verdict.check(false, "edu lists no MSI capability");
        return;
    };
    prepare_cpu();
    aim_msi(d, at, VECTOR);
    // SAFETY: the counting IDT handles every vector.
    unsafe { asm!("sti", options(nomem, nostack)) };
    let mut raised = 0;
    for round in 1..=ROUNDS {
        mmio_write32(bar0 + INTERRUPT_RAISE, 1);
        if arrived(khz, 1000, round) {
            raised += 1;
        }
        mmio_write32(bar0 + INTERRUPT_ACK, mmio_read32(bar0 + INTERRUPT_STATUS));
    }
    println!(
        "passthrough: edu: MSI {} of {} arrived on vector {:#x}",
        raised, ROUNDS, VECTOR
    );
    verdict.check(raised == ROUNDS, "edu's MSI lost");

    // SAFETY: the pages are this VM's, at their guest-physical addresses (identity mapped);
    // the device reads or writes them only between `dma`'s start and its end.
    let (pattern, back, zeros) = unsafe {
        let pg = pages();
        for (i, b) in (*pg).pattern.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7) ^ 0xA5;
        }
        (
            core::ptr::addr_of!((*pg).pattern) as u64,
            core::ptr::addr_of_mut!((*pg).back) as u64,
            core::ptr::addr_of!((*pg).zeros) as u64,
        )
    };
    let before = count(0, VECTOR);
    let read = dma(bar0, khz, pattern, false);
    let written = dma(bar0, khz, back, true);
    let completions = arrived(khz, 1000, before + 2);
    mmio_write32(
        bar0 + INTERRUPT_ACK,
        mmio_read32(bar0 + INTERRUPT_STATUS) | DMA_DONE,
    );
    // SAFETY: as above; the device is done with the pages.
    let intact = unsafe {
        let pg = pages();
        let back = core::ptr::read_volatile(core::ptr::addr_of!((*pg).back));
        let pattern = core::ptr::read_volatile(core::ptr::addr_of!((*pg).pattern));
        back[..TRANSFER] == pattern[..TRANSFER]
    };
    println!(
        "passthrough: edu: DMA round trip of {} bytes: read {}, written {}, intact {}, \
         completion MSIs {}",
        TRANSFER, read, written, intact, completions
    );
    verdict.check(
        read && written && intact && completions,
        "edu's DMA did not reach this VM's memory",
    );

    // The buffer emptied first, so what a blocked read leaves there is zeros.
    let outside = outside_gpa(p);
    let cleared = dma(bar0, khz, zeros, false);
    let tried = dma(bar0, khz, outside, false);
    let returned = dma(bar0, khz, back, true);
    // SAFETY: as above.
    let non_zero = unsafe {
        let pg = pages();
        core::ptr::read_volatile(core::ptr::addr_of!((*pg).back))[..TRANSFER]
            .iter()
            .filter(|&&b| b != 0)
            .count()
    };
    println!(
        "passthrough: edu: DMA read of {:#x} (not this VM's memory): done {}, {} of {} bytes \
         non-zero",
        outside,
        cleared && tried && returned,
        non_zero,
        TRANSFER
    );
}
