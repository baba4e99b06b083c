//! `ivshmem`: the VM's virtual PCI and its IVSHMEM device, with a peer VM that runs the same
//! mode (`role=writer` or `role=reader`, `peer=` the other VM's id).
//!
//! Both: find the host bridge and the IVSHMEM device by scanning bus 0 through ports
//! 0xCF8/0xCFC, check every header dword again through ECAM (at the base the ACPI MCFG
//! names), check IDs, class and revision, size the three BARs, enable MSI-X (vector k of the
//! device raises IDT vector 0x50 + k on CPU 0), and say "ready" in the shared memory. The
//! writer fills 64 KiB of BAR2 with a pattern and rings the reader's doorbell (vector 1). The
//! reader, woken by it, checks the pattern, moves BAR2 (and BAR0) elsewhere and checks again,
//! acknowledges in the shared memory and rings back. Then the writer measures doorbell round
//! trips (its vector 2 to the reader, the reader's vector 2 back), `rounds=` times.

use crate::arg_u64;
use crate::idt::count;
use crate::pci::{self, cf8_read, mcfg_base, mmio_read32, mmio_write32, Device};
use crate::victim::{prepare_cpu, set_ap_mode, AP_MODE_HALT};
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use guest_common::arch::rdtsc;
use guest_common::platform::{Platform, Verdict};
use guest_common::println;

const VENDOR_DEVICE: u32 = 0x1110_1AF4;
const HOST_BRIDGE: u32 = 0x5AF0_8086;
/// IDT vector of the device's MSI-X vector 0.
const VECTOR_BASE: u8 = 0x50;
const VECTORS: usize = 8;
/// Where the reader moves BAR2 and BAR0 (free guest-physical space below 4 GiB).
const MOVED_BAR2: u64 = 0xD000_0000;
const MOVED_BAR0: u64 = 0xD800_0000;

const READY: u64 = 0x5245_4144_5921_0001;
const PATTERN_DONE: u64 = 0x5041_5454_4552_4E21;
const ACK: u64 = 0x4143_4B21_4143_4B21;
/// Shared-memory layout (bytes): a ready word per peer at 64 * id (ids 0..8), the writer's
/// flag at 1024, the reader's acknowledgement at 1088, the pattern from 4096.
const FLAG: usize = 1024;
const ACK_AT: usize = 1088;
const PATTERN_AT: usize = 4096;
const PATTERN_WORDS: usize = 64 * 1024 / 8;

fn pattern(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5_5A5A_0F0F_F0F0
}

/// Shared memory at `base` as 64-bit words.
struct Shm(u64);

impl Shm {
    fn get(&self, byte: usize) -> u64 {
        // SAFETY: inside BAR2, mapped by the guest's page tables.
        unsafe { read_volatile((self.0 + byte as u64) as *const u64) }
    }
    fn set(&self, byte: usize, v: u64) {
        // SAFETY: as for `get`.
        unsafe { write_volatile((self.0 + byte as u64) as *mut u64, v) }
    }
    /// Words of the pattern that differ.
    fn pattern_errors(&self) -> usize {
        (0..PATTERN_WORDS)
            .filter(|&i| self.get(PATTERN_AT + 8 * i) != pattern(i))
            .count()
    }
}

/// Waits up to `ms` for `cond` (interrupts as they are).
fn wait_for(khz: u64, ms: u64, cond: impl Fn() -> bool) -> bool {
    let start = rdtsc();
    while !cond() {
        if rdtsc().wrapping_sub(start) > ms * khz {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

fn doorbell(regs: u64, peer: u16, vector: u16) {
    mmio_write32(regs + 0xC, u32::from(peer) << 16 | u32::from(vector));
}

fn received(vector: usize) -> u32 {
    count(0, VECTOR_BASE + vector as u8)
}

/// Maps BAR2 (a 2 MiB-aligned region; above 4 GiB through the spare page directory).
fn map_bar2(addr: u64) -> Option<u64> {
    if addr < 1 << 32 {
        return Some(addr);
    }
    guest_common::paging::map_high(addr).map(|p| p as u64)
}

pub fn run(p: &Platform, khz: u64, verdict: &mut Verdict) {
    set_ap_mode(AP_MODE_HALT);
    let writer = p.arg("role") == Some("writer");
    let peer = arg_u64(p, "peer", 0) as u16;
    let rounds = arg_u64(p, "rounds", 100) as u32;

    // Bus 0 through the ports.
    let host = cf8_read(0, 0);
    let host_class = cf8_read(0, 8) >> 8;
    println!(
        "ivshmem: 00:00.0 {:04x}:{:04x} class {:06x}",
        host & 0xFFFF,
        host >> 16,
        host_class
    );
    // `nohost`: a post-launched VM whose bus is its Device Model's (here an empty one);
    // `hwbus`: the Service VM, whose bus is the hardware's (slot 31 and the addresses BARs
    // leave may decode something else).
    let hardware_bus = p.flag("hwbus");
    let device_model_bus = p.flag("nohost") || hardware_bus;
    verdict.check(
        device_model_bus || (host == HOST_BRIDGE && host_class == 0x06_0000),
        "no host bridge at 00:00.0",
    );
    let Some(dev) = pci::find(VENDOR_DEVICE) else {
        println!("ivshmem: no 1af4:1110 on bus 0");
        verdict.check(false, "no IVSHMEM device");
        return;
    };
    let ecam = mcfg_base(p);
    let d = Device { dev, ecam };
    let rev_class = d.cfg(8);
    println!(
        "ivshmem: 00:{:02x}.0 1af4:1110 revision {} class {:06x}; ECAM at {:#x}",
        dev,
        rev_class & 0xFF,
        rev_class >> 8,
        ecam
    );
    verdict.check(rev_class == 0x0500_0001, "wrong class or revision");
    // ECAM shows the same header as the ports, and a function that does not exist is absent.
    let same = ecam != 0 && (0..64u16).step_by(4).all(|o| d.ecam(o) == d.cfg(o));
    let host_same = ecam != 0 && mmio_read32(ecam) == host;
    let absent =
        cf8_read(31, 0) == u32::MAX && (ecam == 0 || mmio_read32(ecam + (31 << 15)) == u32::MAX);
    println!(
        "ivshmem: ECAM header matches the ports: {}; empty slot reads all-ones: {}",
        same && host_same,
        absent
    );
    if hardware_bus {
        verdict.check(same && host_same, "ECAM and 0xCF8 disagree");
    } else if device_model_bus {
        verdict.check(absent, "an empty slot does not read all-ones");
    } else {
        verdict.check(same && host_same && absent, "ECAM and 0xCF8 disagree");
    }

    // BARs, decode off while sizing.
    d.set_cfg(4, 0);
    let (bar0, size0) = d.size_bar(0, false);
    let (bar1, size1) = d.size_bar(1, false);
    let bar2_flags = d.cfg(0x18) & 0xF;
    let (bar2, size2) = d.size_bar(2, true);
    println!(
        "ivshmem: BAR0 {:#x} size {:#x}, BAR1 {:#x} size {:#x}, BAR2 {:#x} size {:#x} flags {:#x}",
        bar0, size0, bar1, size1, bar2, size2, bar2_flags
    );
    verdict.check(size0 == 256 && size1 == 4096, "BAR0/BAR1 sizes");
    verdict.check(
        bar2_flags == 0xC && size2 >= 2 << 20,
        "BAR2 is not 64-bit prefetchable",
    );

    // MSI-X: every vector to CPU 0 (physical), fixed, edge; then enable with memory and bus
    // mastering on.
    prepare_cpu();
    let Some(m) = d.msix() else {
        verdict.check(false, "no MSI-X capability");
        return;
    };
    println!(
        "ivshmem: MSI-X {} vectors, table in BAR{} at {:#x}",
        m.vectors, m.table_bar, m.table_offset
    );
    verdict.check(m.vectors == VECTORS && m.table_bar == 1, "MSI-X layout");
    d.enable_msix(bar1, VECTOR_BASE);
    // SAFETY: the counting IDT handles every vector.
    unsafe { asm!("sti", options(nomem, nostack)) };

    let regs = bar0;
    let me = mmio_read32(regs + 8);
    mmio_write32(regs + 8, 0x55);
    println!(
        "ivshmem: IVPosition {} (read-only: {})",
        me,
        mmio_read32(regs + 8) == me
    );
    verdict.check(
        mmio_read32(regs + 8) == me && mmio_read32(regs + 0xC) == 0,
        "IVPosition/Doorbell",
    );
    let Some(shm_addr) = map_bar2(bar2) else {
        verdict.check(false, "BAR2 beyond what the guest maps");
        return;
    };
    let shm = Shm(shm_addr);
    shm.set(64 * me as usize, READY);
    let peer_ready = wait_for(khz, 20_000, || shm.get(64 * peer as usize) == READY);
    println!("ivshmem: peer {} ready: {}", peer, peer_ready);
    verdict.check(peer_ready, "the peer never said ready");
    if !peer_ready {
        return;
    }

    if writer {
        for i in 0..PATTERN_WORDS {
            shm.set(PATTERN_AT + 8 * i, pattern(i));
        }
        shm.set(FLAG, PATTERN_DONE);
        println!(
            "ivshmem: pattern of {} bytes written; ringing peer {} vector 1",
            PATTERN_WORDS * 8,
            peer
        );
        doorbell(regs, peer, 1);
        let acked = wait_for(khz, 20_000, || received(1) >= 1);
        println!(
            "ivshmem: woken by the peer: {}; acknowledgement: {}",
            acked,
            shm.get(ACK_AT) == ACK
        );
        verdict.check(
            acked && shm.get(ACK_AT) == ACK,
            "no acknowledgement from the reader",
        );
        // Round trips: ring the reader's vector 2, wait for our vector 2.
        let mut total = 0u64;
        let mut done = 0;
        for i in 0..rounds {
            let t0 = rdtsc();
            doorbell(regs, peer, 2);
            if !wait_for(khz, 5_000, || received(2) > i) {
                break;
            }
            total += rdtsc() - t0;
            done += 1;
        }
        println!(
            "ivshmem: doorbell round trips {}/{}, average {} TSC ticks",
            done,
            rounds,
            total / u64::from(done.max(1))
        );
        verdict.check(done == rounds, "doorbell round trips lost");
    } else {
        let woken = wait_for(khz, 20_000, || received(1) >= 1);
        let flag = shm.get(FLAG) == PATTERN_DONE;
        let errors = shm.pattern_errors();
        println!(
            "ivshmem: woken by vector 1: {}; pattern of {} bytes: {} word(s) differ",
            woken,
            PATTERN_WORDS * 8,
            errors
        );
        verdict.check(woken && flag && errors == 0, "pattern not seen");
        moves(&d, bar0, bar2, hardware_bus, verdict);
        shm.set(ACK_AT, ACK);
        doorbell(regs, peer, 1);
        let mut answered = 0;
        for i in 0..rounds {
            if !wait_for(khz, 5_000, || received(2) > i) {
                break;
            }
            doorbell(regs, peer, 2);
            answered += 1;
        }
        println!("ivshmem: answered {}/{} doorbells", answered, rounds);
        verdict.check(answered == rounds, "doorbells lost");
    }
    // Nothing else arrived on the device's other vectors.
    let stray: u32 = (3..VECTORS).map(received).sum::<u32>() + received(0);
    println!("ivshmem: stray device vectors: {}", stray);
    verdict.check(stray == 0, "stray vectors");
    // SAFETY: reporting only from here.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// Moves BAR2 and BAR0 below 4 GiB (decode off while moving) and checks that the region and
/// the registers follow, and that the old BAR2 address no longer shows the region; then moves
/// them back.
fn moves(d: &Device, bar0: u64, bar2: u64, hardware_bus: bool, verdict: &mut Verdict) {
    d.set_cfg(4, 0x4);
    // Through ECAM where the VM has it.
    let set = |offset: u16, value: u32| {
        if d.ecam != 0 {
            d.set_ecam(offset, value)
        } else {
            d.set_cfg(offset, value)
        }
    };
    set(0x18, MOVED_BAR2 as u32 | 0xC);
    set(0x1C, 0);
    d.set_cfg(0x10, MOVED_BAR0 as u32);
    d.set_cfg(4, 0x6);
    let moved = Shm(MOVED_BAR2);
    let errors = moved.pattern_errors();
    let ivpos = mmio_read32(MOVED_BAR0 + 8);
    let old_regs = mmio_read32(bar0 + 8);
    // The old BAR2 address: mapped again by the guest (it may be above 4 GiB).
    let old = map_bar2(bar2).map(|a| Shm(a).get(PATTERN_AT));
    println!(
        "ivshmem: BAR2 moved to {:#x}: {} word(s) differ; BAR0 moved to {:#x}: IVPosition {}; old BAR0 reads {:#x}, old BAR2 reads {:#x}",
        MOVED_BAR2,
        errors,
        MOVED_BAR0,
        ivpos,
        old_regs,
        old.unwrap_or(0)
    );
    verdict.check(errors == 0, "BAR2 move lost the region");
    // On a virtual bus nothing answers there any more (all-ones). On the Service VM's, the
    // hardware's bus, what answers is the host's (QEMU reads 0): the region must be gone.
    let old_windows_free = if hardware_bus {
        old.is_some_and(|v| v != pattern(0))
    } else {
        old_regs == u32::MAX && old == Some(u64::MAX)
    };
    verdict.check(old_windows_free, "old BAR windows still decode");
    d.set_cfg(4, 0x4);
    d.set_cfg(0x18, bar2 as u32 | 0xC);
    d.set_cfg(0x1C, (bar2 >> 32) as u32);
    d.set_cfg(0x10, bar0 as u32);
    d.set_cfg(4, 0x6);
    let back = map_bar2(bar2).map(|a| Shm(a).pattern_errors());
    println!(
        "ivshmem: BARs moved back: {} word(s) differ",
        back.unwrap_or(usize::MAX)
    );
    verdict.check(back == Some(0), "BAR2 move back lost the region");
}
