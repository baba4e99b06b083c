//! `intx` on the command line: checks that a physical device interrupt reaches the Service
//! VM through its vIOAPIC (the hypervisor remaps the physical IOAPIC pin). The device is the
//! e1000e NIC every QEMU q35 machine has (8086:10D3): writing its Interrupt Cause Set
//! register with the cause enabled in its mask raises its INTx line, masking every cause
//! drops it. Its INTx pin A reaches one of the PCI GSIs 16-23 (which one depends on the
//! chipset's routing), so all eight vIOAPIC pins get a vector of their own, level-triggered,
//! and the vector that arrives tells the pin. Then the same NIC's MSI, which the hypervisor
//! remaps to a vector of its own and back to the Service VM's message, and its MSI-X, whose
//! table the hypervisor keeps virtual for the Service VM.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_common::acpi;
use guest_common::arch::{cpuid, rdtsc};
use guest_common::idt::{self, IRQ_BASE};
use guest_common::mem::GuestMem;
use guest_common::println;

const IOAPIC: usize = 0xFEC0_0000;
const LAPIC: usize = 0xFEE0_0000;
const FIRST_PCI_GSI: u32 = 16;
const PCI_GSIS: u32 = 8;
/// e1000e registers (82574 datasheet): cause read (clears), cause set, mask set, mask clear.
const ICR: usize = 0xC0;
const ICS: usize = 0xC8;
const IMS: usize = 0xD0;
const IMC: usize = 0xD8;
/// Interrupt vector allocation (MSI-X): which table entry each queue's interrupt uses.
const IVAR: usize = 0xE4;
/// The cause used: transmit descriptor written back.
const CAUSE_TXDW: u32 = 1 << 0;
/// Receive and transmit queue 0 causes (MSI-X mode).
const CAUSE_RXQ0: u32 = 1 << 20;
const CAUSE_TXQ0: u32 = 1 << 22;
const RTE_LEVEL: u32 = 1 << 15;
const RTE_MASKED: u32 = 1 << 16;

/// The NIC's register BAR, for the handler.
static BAR: AtomicU64 = AtomicU64::new(0);
/// Interrupts taken, and the vectors they came on (bit n: IRQ_BASE + n).
static TAKEN: AtomicU32 = AtomicU32::new(0);
static VECTORS: AtomicU32 = AtomicU32::new(0);

// Register-indirect MOVs: the compiler may pick forms for constant addresses (moffs) that a
// hypervisor's MMIO decoder need not know.
fn mmio_write(addr: usize, value: u32) {
    // SAFETY: identity-mapped device registers (IOAPIC, local APIC, the NIC's BAR).
    unsafe { asm!("mov dword ptr [{}], {:e}", in(reg) addr, in(reg) value, options(nostack)) }
}

fn mmio_read(addr: usize) -> u32 {
    let value: u32;
    // SAFETY: as for `mmio_write`.
    unsafe { asm!("mov {:e}, dword ptr [{}]", out(reg) value, in(reg) addr, options(nostack)) };
    value
}

fn config_address(dev: u8, reg: u8) -> u32 {
    0x8000_0000 | (dev as u32) << 11 | (reg as u32 & 0xFC)
}

fn config_read(dev: u8, reg: u8) -> u32 {
    let value: u32;
    // SAFETY: PCI configuration mechanism #1; the Service VM owns the configuration space.
    unsafe {
        asm!("out dx, eax", in("dx") 0xCF8u16, in("eax") config_address(dev, reg));
        asm!("in eax, dx", in("dx") 0xCFCu16, out("eax") value);
    }
    value
}

fn config_write(dev: u8, reg: u8, value: u32) {
    // SAFETY: as for `config_read`.
    unsafe {
        asm!("out dx, eax", in("dx") 0xCF8u16, in("eax") config_address(dev, reg));
        asm!("out dx, eax", in("dx") 0xCFCu16, in("eax") value);
    }
}

fn set_rte(gsi: u32, low: u32, dest: u32) {
    let index = 0x10 + 2 * gsi;
    mmio_write(IOAPIC, index + 1);
    mmio_write(IOAPIC + 0x10, dest << 24);
    mmio_write(IOAPIC, index);
    mmio_write(IOAPIC + 0x10, low);
}

fn handler(vector: u8) {
    let bar = BAR.load(Ordering::SeqCst) as usize;
    // Every cause masked: the NIC drops its line; reading ICR clears the causes.
    mmio_write(bar + IMC, u32::MAX);
    let _ = mmio_read(bar + ICR);
    VECTORS.fetch_or(1 << (vector - IRQ_BASE), Ordering::SeqCst);
    TAKEN.fetch_add(1, Ordering::SeqCst);
    mmio_write(LAPIC + 0xB0, 0);
}

/// Raises the NIC's interrupt.
fn trigger(bar: usize) {
    mmio_write(bar + IMS, CAUSE_TXDW);
    mmio_write(bar + ICS, CAUSE_TXDW);
}

/// Waits with interrupts enabled until `TAKEN` reaches `count` or `ticks` TSC ticks pass.
fn wait_for(count: u32, ticks: u64) -> bool {
    let start = rdtsc();
    while TAKEN.load(Ordering::SeqCst) < count && rdtsc().wrapping_sub(start) < ticks {
        // SAFETY: the IDT has a stub for every vector the vIOAPIC was given.
        unsafe { asm!("sti", "pause", "cli") };
    }
    TAKEN.load(Ordering::SeqCst) >= count
}

/// Runs the check; returns what failed.
/// `renumber=DEV`: tries to move the buses of the bridge at 00:DEV.0 four numbers up (a
/// function behind it belongs to another VM, so the hypervisor must refuse) and reads the
/// bus numbers and the function at device 1 of its secondary bus back.
pub fn renumber(dev: u8) {
    let before = config_read(dev, 0x18);
    let secondary = (before >> 8) as u8;
    let moved = before & 0xFF00_00FF
        | u32::from(secondary.wrapping_add(4)) << 8
        | u32::from(((before >> 16) as u8).wrapping_add(4)) << 16;
    config_write(dev, 0x18, moved);
    let after = config_read(dev, 0x18);
    let behind = config_read_at(secondary, 1, 0);
    println!(
        "svm: renumber: bridge 00:{:02x}.0 buses {:#010x}, wrote {:#010x}, reads {:#010x}; \
         {:02x}:01.0 reads {:#010x}",
        dev, before, moved, after, secondary, behind
    );
}

fn config_read_at(bus: u8, dev: u8, reg: u8) -> u32 {
    let value: u32;
    // SAFETY: as for `config_read`.
    unsafe {
        asm!("out dx, eax", in("dx") 0xCF8u16, in("eax") config_address(dev, reg) | u32::from(bus) << 16);
        asm!("in eax, dx", in("dx") 0xCFCu16, out("eax") value);
    }
    value
}

pub fn run() -> Option<&'static str> {
    let Some(dev) = (0..32u8).find(|&d| config_read(d, 0) == 0x10D3_8086) else {
        // A function the Service VM must not see is absent through ECAM too.
        let through_ecam = acpi::ecam(&GuestMem::new()).ok().map(|(base, _, _)| {
            (0..32usize).any(|d| mmio_read(base as usize + (d << 15)) == 0x10D3_8086)
        });
        println!(
            "svm: intx: no e1000e (8086:10d3) on bus 0; through ECAM: {}",
            match through_ecam {
                Some(true) => "present",
                Some(false) => "absent too",
                None => "no MCFG",
            }
        );
        return Some("no e1000e");
    };
    let bar = (config_read(dev, 0x10) & !0xF) as usize;
    // Memory decoding on, INTx not disabled.
    let command = config_read(dev, 0x04) & 0xFFFF;
    config_write(dev, 0x04, (command | 0x2) & !0x400);
    BAR.store(bar as u64, Ordering::SeqCst);
    mmio_write(bar + IMC, u32::MAX);
    let _ = mmio_read(bar + ICR);
    println!(
        "svm: intx: e1000e at 00:{:02x}.0, registers at {:#x}",
        dev, bar
    );

    let khz = match cpuid(0x4000_0010, 0).0 {
        0 => 3_000_000,
        k => u64::from(k),
    };
    let timeout = khz * 2000;
    idt::on_interrupt(handler);
    mmio_write(LAPIC + 0x80, 0);
    mmio_write(LAPIC + 0xF0, 0x1FF);
    let apic_id = mmio_read(LAPIC + 0x20) >> 24;
    for i in 0..PCI_GSIS {
        set_rte(
            FIRST_PCI_GSI + i,
            RTE_LEVEL | (IRQ_BASE as u32 + i),
            apic_id,
        );
    }

    const ROUNDS: u32 = 3;
    for round in 1..=ROUNDS {
        trigger(bar);
        if !wait_for(round, timeout) {
            println!(
                "svm: intx: interrupt {} of {} did not arrive",
                round, ROUNDS
            );
            return Some("intx interrupt");
        }
    }
    let vectors = VECTORS.load(Ordering::SeqCst);
    if vectors.count_ones() != 1 {
        println!(
            "svm: intx: interrupts came on vectors {:#b} (not one pin)",
            vectors
        );
        return Some("intx pin");
    }
    let gsi = FIRST_PCI_GSI + vectors.trailing_zeros();
    let vector = IRQ_BASE as u32 + vectors.trailing_zeros();
    println!("svm: intx: {} level interrupts on GSI {}", ROUNDS, gsi);

    // A masked entry holds the interrupt back; unmasking it delivers the line still high.
    set_rte(gsi, RTE_LEVEL | RTE_MASKED | vector, apic_id);
    trigger(bar);
    if wait_for(ROUNDS + 1, timeout / 4) {
        println!("svm: intx: an interrupt arrived through a masked entry");
        return Some("intx mask");
    }
    set_rte(gsi, RTE_LEVEL | vector, apic_id);
    if !wait_for(ROUNDS + 1, timeout) {
        println!("svm: intx: the interrupt held back by the mask did not arrive at unmask");
        return Some("intx unmask");
    }
    println!("svm: intx: masked entry held the interrupt; unmasking delivered it");

    // Edge-triggered: one interrupt per rising edge.
    set_rte(gsi, vector, apic_id);
    trigger(bar);
    if !wait_for(ROUNDS + 2, timeout) {
        println!("svm: intx: no edge-triggered interrupt");
        return Some("intx edge");
    }
    println!("svm: intx: edge-triggered interrupt delivered");
    for i in 0..PCI_GSIS {
        set_rte(FIRST_PCI_GSI + i, RTE_MASKED, 0);
    }
    if let Some(failed) = msi(dev, bar, apic_id, ROUNDS + 2, timeout) {
        return Some(failed);
    }
    if let Some(failed) = ecam(dev, bar, timeout) {
        return Some(failed);
    }
    msix(dev, bar, apic_id, timeout)
}

/// The NIC's configuration space through the host's ECAM window that the Service VM's MCFG
/// names: the same as through the ports, the MSI capability included (its own message, kept
/// by the hypervisor: a data register written there is what the next MSI carries), and the
/// PCIe extended space past 0x100 (QEMU's e1000e has its AER capability there).
fn ecam(dev: u8, bar: usize, timeout: u64) -> Option<&'static str> {
    let (base, first, last) = match acpi::ecam(&GuestMem::new()) {
        Ok(w) => w,
        Err(e) => {
            println!("svm: ecam: {}", e);
            return Some("no mcfg");
        }
    };
    let Some(at) = capability(dev, 0x05) else {
        return Some("no msi");
    };
    let f = base as usize + ((dev as usize) << 15);
    let id = mmio_read(f);
    let wide = config_read(dev, at) >> 16 & 1 << 7 != 0;
    let data_at = usize::from(at) + if wide { 12 } else { 8 };
    let data = mmio_read(f + data_at) & 0xFFFF;
    let ext = mmio_read(f + 0x100);
    // A new vector through ECAM (a 16-bit write, as Linux writes MSI data), then MSI on.
    let vector = IRQ_BASE as u32 + 6;
    // SAFETY: the NIC's MSI data register in the ECAM window, identity-mapped.
    unsafe { core::ptr::write_volatile((f + data_at) as *mut u16, vector as u16) };
    let through_ports = config_read(dev, data_at as u8) & 0xFFFF;
    VECTORS.store(0, Ordering::SeqCst);
    let before = TAKEN.load(Ordering::SeqCst);
    config_write(dev, at, config_read(dev, at) | 1 << 16);
    trigger(bar);
    let arrived = wait_for(before + 1, timeout);
    config_write(dev, at, config_read(dev, at) & !(1 << 16));
    let on = VECTORS.load(Ordering::SeqCst);
    println!(
        "svm: ecam: buses {}-{} at {:#x}; 00:{:02x}.0 {:#x} (ports agree: {}), MSI data {:#x}, extended space: {}; data written: ports read {:#x}, MSI on {:#x}: {}",
        first,
        last,
        base,
        dev,
        id,
        id == config_read(dev, 0),
        data,
        ext != u32::MAX && ext != 0,
        through_ports,
        vector,
        arrived && on == 1 << 6
    );
    if id != config_read(dev, 0) || data != IRQ_BASE as u32 + 7 || ext == u32::MAX || ext == 0 {
        return Some("ecam");
    }
    if through_ports != vector || !arrived || on != 1 << 6 {
        return Some("ecam msi");
    }
    None
}

/// The offset of the capability with `id` in the function's list.
fn capability(dev: u8, id: u8) -> Option<u8> {
    let mut at = config_read(dev, 0x34) as u8 & 0xFC;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let head = config_read(dev, at);
        if head as u8 == id {
            return Some(at);
        }
        at = (head >> 8) as u8 & 0xFC;
    }
    None
}

/// MSI of the Service VM's own device: the hypervisor keeps the message the Service VM
/// programs (it reads it back) and remaps the hardware's; the interrupts arrive on the
/// Service VM's vector.
fn msi(dev: u8, bar: usize, apic_id: u32, taken: u32, timeout: u64) -> Option<&'static str> {
    let msix = capability(dev, 0x11);
    let Some(at) = capability(dev, 0x05) else {
        println!("svm: intx: the e1000e has no MSI capability");
        return Some("no msi");
    };
    let vector = IRQ_BASE as u32 + 7;
    let wide = config_read(dev, at) >> 16 & 1 << 7 != 0;
    let addr = 0xFEE0_0000 | apic_id << 12;
    config_write(dev, at + 4, addr);
    let data_at = if wide {
        config_write(dev, at + 8, 0);
        at + 12
    } else {
        at + 8
    };
    config_write(dev, data_at, vector);
    // Bus mastering on: a message is a memory write by the device.
    config_write(dev, 0x04, config_read(dev, 0x04) & 0xFFFF | 0x4);
    config_write(dev, at, config_read(dev, at) | 1 << 16);
    let readback = (config_read(dev, at + 4), config_read(dev, data_at) & 0xFFFF);
    VECTORS.store(0, Ordering::SeqCst);
    const ROUNDS: u32 = 3;
    let mut arrived = 0;
    for round in 1..=ROUNDS {
        trigger(bar);
        if wait_for(taken + round, timeout) {
            arrived += 1;
        }
    }
    config_write(dev, at, config_read(dev, at) & !(1 << 16));
    let vectors = VECTORS.load(Ordering::SeqCst);
    println!(
        "svm: intx: MSI {} of {} on vector {:#x} (vectors seen {:#b}); reads back its message: {}; MSI-X listed: {}",
        arrived,
        ROUNDS,
        vector,
        vectors,
        readback == (addr, vector),
        msix.is_some()
    );
    if arrived != ROUNDS || vectors != 1 << 7 {
        return Some("msi");
    }
    if readback != (addr, vector) {
        return Some("msi capability");
    }
    None
}

/// The address of the register at `offset` into the BAR a capability's table or PBA dword
/// (`bir_offset`: BAR index in bits 2:0) names.
fn bar_register(dev: u8, bir_offset: u32) -> usize {
    let bar = config_read(dev, 0x10 + 4 * (bir_offset & 7) as u8);
    (bar & !0xF) as usize + (bir_offset & !7) as usize
}

/// MSI-X of the Service VM's own device: it programs the table in the NIC's BAR as a driver
/// does, the hypervisor keeps that table and gives the hardware's entries vectors of its own.
/// Transmit queue 0 goes to entry 1 and receive queue 0 to entry 3 (IVAR), each on its own
/// vector; then entry 3 masked holds its interrupt in the hardware's PBA, and unmasking it
/// delivers it.
fn msix(dev: u8, bar: usize, apic_id: u32, timeout: u64) -> Option<&'static str> {
    let Some(at) = capability(dev, 0x11) else {
        println!("svm: intx: the e1000e lists no MSI-X");
        return Some("no msix");
    };
    let entries = (config_read(dev, at) >> 16 & 0x7FF) + 1;
    let table = bar_register(dev, config_read(dev, at + 4));
    let pba = bar_register(dev, config_read(dev, at + 8));
    // Entry k to vector IRQ_BASE + k on this CPU (the GSI entries are masked by now);
    // only entries 1 and 3 open.
    for k in 0..entries as usize {
        let e = table + 16 * k;
        mmio_write(e, 0xFEE0_0000 | apic_id << 12);
        mmio_write(e + 4, 0);
        mmio_write(e + 8, IRQ_BASE as u32 + k as u32);
        mmio_write(e + 12, u32::from(k != 1 && k != 3));
    }
    let readback = mmio_read(table + 16 + 8);
    config_write(dev, at, config_read(dev, at) | 1 << 31);
    mmio_write(bar + IVAR, (3 | 8) | (1 | 8) << 8);
    const ROUNDS: u32 = 3;
    let mut arrived = [0u32; 2];
    for (k, (cause, entry)) in [(CAUSE_TXQ0, 1u32), (CAUSE_RXQ0, 3)]
        .into_iter()
        .enumerate()
    {
        VECTORS.store(0, Ordering::SeqCst);
        for _ in 0..ROUNDS {
            let before = TAKEN.load(Ordering::SeqCst);
            mmio_write(bar + IMS, cause);
            mmio_write(bar + ICS, cause);
            if wait_for(before + 1, timeout) {
                arrived[k] += 1;
            }
            mmio_write(bar + ICR, u32::MAX);
        }
        if VECTORS.load(Ordering::SeqCst) != 1 << entry {
            arrived[k] = 0;
        }
    }
    println!(
        "svm: intx: MSI-X {} entries; entry 1 (TxQ0) {} of {} on vector {:#x}, entry 3 (RxQ0) {} of {} on vector {:#x}; reads back its data: {}",
        entries,
        arrived[0],
        ROUNDS,
        IRQ_BASE + 1,
        arrived[1],
        ROUNDS,
        IRQ_BASE + 3,
        readback == IRQ_BASE as u32 + 1
    );
    if arrived != [ROUNDS; 2] || readback != IRQ_BASE as u32 + 1 {
        return Some("msix");
    }
    // Entry 3 masked: the interrupt waits in the hardware's pending bits.
    mmio_write(table + 3 * 16 + 12, 1);
    let before = TAKEN.load(Ordering::SeqCst);
    mmio_write(bar + IMS, CAUSE_RXQ0);
    mmio_write(bar + ICS, CAUSE_RXQ0);
    let leaked = wait_for(before + 1, timeout / 8);
    let pending = mmio_read(pba) >> 3 & 1;
    mmio_write(table + 3 * 16 + 12, 0);
    let delivered = wait_for(before + 1, timeout);
    println!(
        "svm: intx: MSI-X entry 3 masked: arrived {}, pending bit {}; unmasked: delivered {}",
        leaked, pending, delivered
    );
    mmio_write(bar + IMC, u32::MAX);
    mmio_write(bar + ICR, u32::MAX);
    config_write(dev, at, config_read(dev, at) & !(1 << 31));
    if leaked || pending != 1 || !delivered {
        return Some("msix mask");
    }
    None
}
