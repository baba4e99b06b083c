//! `passthrough`: a physical PCI function the scenario gives this VM (`pci_devs`), here QEMU
//! q35's e1000e NIC (8086:10d3). The guest lists its bus, finds the NIC at its virtual slot,
//! sizes its BARs, turns on memory decoding and bus mastering, reads the NIC's registers
//! through BAR0 (the hardware's, mapped at the VM's address), checks the capability list
//! (MSI and MSI-X present). With `intx=PIN`, the NIC's INTx line (the scenario's
//! `pt_intx`, remapped by the hypervisor) must reach vIOAPIC pin PIN, tested first (run after
//! the MSI part, no INTx arrived in QEMU; not investigated). Then it aims MSI at itself and makes the NIC
//! interrupt through its Interrupt Cause Set register, counting the vectors that arrive; then
//! it disables MSI and checks nothing more arrives. Then MSI-X through the hypervisor's
//! virtual table (two queues on two entries, a masked entry held pending). Then DMA: it queues one frame on the NIC's transmit ring in its
//! own memory and waits for the NIC to write the descriptor's done bit back there (the NIC
//! reads the ring and the frame and writes the status at guest-physical addresses, which only
//! reach this VM's memory when the hypervisor's IOMMU translates them), then a second frame
//! whose address lies beyond its RAM (or at `dma_outside=ADDR`), which the IOMMU must block;
//! with `iommu=ADDR` it first tries to turn the IOMMU off through its registers there, which
//! must not be this VM's to reach. With `absent` the
//! guest only checks that the NIC is not on its bus (another VM owns it).

use crate::idt::count;
use crate::pci::{cf8_read, mmio_read32, mmio_write32, Device};
use crate::spin_ms;
use crate::victim::{prepare_cpu, set_ap_mode, AP_MODE_HALT};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use guest_common::arch::rdtsc;
use guest_common::platform::{Platform, Verdict};
use guest_common::println;

const E1000E: u32 = 0x10D3_8086;
/// Bochs' PIIX3 UHCI USB controller: its only BAR is 32 I/O ports (BAR4).
const UHCI: u32 = 0x7020_8086;
/// UHCI registers: interrupt enable (16 bits, 4 bits used), start-of-frame modify (8 bits,
/// 0x40 after reset).
const USBINTR: u16 = 0x04;
const SOFMOD: u16 = 0x0C;
/// e1000e registers (82574 datasheet): device status, interrupt cause read/set, mask
/// set/clear.
const STATUS: u64 = 0x08;
/// Good packets transmitted count (statistics, clear on read).
const GPTC: u64 = 0x4080;
const ICR: u64 = 0xC0;
const ICS: u64 = 0xC8;
const IMS: u64 = 0xD0;
const IMC: u64 = 0xD8;
/// Interrupt vector allocation (MSI-X): which table entry each queue's interrupt uses.
const IVAR: u64 = 0xE4;
/// Receive and transmit queue 0 causes (MSI-X mode).
const CAUSE_RXQ0: u32 = 1 << 20;
const CAUSE_TXQ0: u32 = 1 << 22;
/// MSI-X entry k goes to vector MSIX_VECTORS + k.
const MSIX_VECTORS: u8 = 0x60;
/// Transmit descriptor written back: a cause nothing else raises while the NIC is idle.
const CAUSE_TXDW: u32 = 1 << 0;
const VECTOR: u8 = 0x58;
const INTX_VECTOR: u8 = 0x59;
const IOAPIC: u64 = 0xFEC0_0000;
const RTE_LEVEL: u32 = 1 << 15;
const RTE_ACTIVE_LOW: u32 = 1 << 13;
const RTE_MASKED: u32 = 1 << 16;

/// The NIC's registers, for the interrupt hook.
static NIC_BAR0: AtomicU64 = AtomicU64::new(0);

/// Runs (interrupts off) for each vector taken: the NIC's INTx line stays asserted until its
/// cause register is read, so the hook reads it before the EOI.
fn acknowledge_intx(vector: u8) {
    if vector == INTX_VECTOR {
        let _ = mmio_read32(NIC_BAR0.load(Ordering::SeqCst) + ICR);
    }
}

fn ioapic_write(reg: u32, value: u32) {
    mmio_write32(IOAPIC, reg);
    mmio_write32(IOAPIC + 0x10, value);
}

/// Programs vIOAPIC `pin` (level, active low: PCI INTx) to this CPU and raises the NIC's
/// cause `ROUNDS` times; how many interrupts arrived.
fn intx(bar0: u64, pin: u32, khz: u64) -> u32 {
    NIC_BAR0.store(bar0, Ordering::SeqCst);
    crate::idt::on_vector(acknowledge_intx);
    ioapic_write(0x11 + 2 * pin, 0);
    ioapic_write(
        0x10 + 2 * pin,
        u32::from(INTX_VECTOR) | RTE_LEVEL | RTE_ACTIVE_LOW,
    );
    // SAFETY: the counting IDT handles every vector.
    unsafe { asm!("sti", options(nomem, nostack)) };
    mmio_write32(bar0 + IMS, CAUSE_TXDW);
    let base = count(0, INTX_VECTOR);
    let mut taken = 0;
    for round in 1..=ROUNDS {
        mmio_write32(bar0 + ICS, CAUSE_TXDW);
        if wait_count(khz, 1000, INTX_VECTOR, base + round) {
            taken += 1;
        }
    }
    ioapic_write(0x10 + 2 * pin, RTE_MASKED);
    taken
}
/// Transmit control and ring registers.
const TCTL: u64 = 0x400;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const TDBAL: u64 = 0x3800;
const TDH: u64 = 0x3810;
const TDT: u64 = 0x3818;
/// Legacy descriptor command: end of packet, insert FCS, report status.
const CMD_EOP_IFCS_RS: u8 = 0x01 | 0x02 | 0x08;
const STA_DD: u8 = 0x01;

/// Receive control: enable, unicast and multicast promiscuous, MAC loopback, broadcast
/// accept, strip the CRC; 2048-byte buffers (BSIZE 0).
const RCTL: u64 = 0x100;
const RCTL_LOOPBACK: u32 = 1 << 1 | 1 << 3 | 1 << 4 | 1 << 6 | 1 << 15 | 1 << 26;
const RDBAL: u64 = 0x2800;
const RDT: u64 = 0x2818;
const RX_BUFFER: usize = 2048;

/// The transmit ring (8 legacy descriptors) and one frame, the receive ring and two receive
/// buffers, in this VM's memory.
#[repr(C, align(4096))]
struct Dma {
    ring: [u8; 128],
    frame: [u8; 64],
    rx_ring: [u8; 128],
    rx: [[u8; RX_BUFFER]; 2],
}

static mut DMA: Dma = Dma {
    ring: [0; 128],
    frame: [0; 64],
    rx_ring: [0; 128],
    rx: [[0; RX_BUFFER]; 2],
};

/// Points a descriptor ring's registers (base low and high, length, head, tail: the same
/// layout at RDBAL and TDBAL) at the 8 descriptors at `ring_gpa`, none of them queued.
fn set_ring(registers: u64, ring_gpa: u64) {
    mmio_write32(registers, ring_gpa as u32);
    mmio_write32(registers + 0x04, (ring_gpa >> 32) as u32);
    mmio_write32(registers + 0x08, 128);
    mmio_write32(registers + 0x10, 0);
    mmio_write32(registers + 0x18, 0);
}

/// Loops every frame the NIC transmits back into receive descriptors 0 and 1 (MAC loopback),
/// so what the NIC read for a frame shows in this VM's memory.
fn receive_loopback(bar0: u64) {
    // SAFETY: as in `transmit`.
    unsafe {
        let dma = core::ptr::addr_of_mut!(DMA);
        let ring = core::ptr::addr_of_mut!((*dma).rx_ring) as *mut u8;
        for i in 0..128 {
            core::ptr::write_volatile(ring.add(i), 0);
        }
        for k in 0..2 {
            let buffer = core::ptr::addr_of_mut!((*dma).rx[k]) as u64;
            core::ptr::write_volatile(ring.add(16 * k) as *mut u64, buffer);
        }
        set_ring(bar0 + RDBAL, ring as u64);
        mmio_write32(bar0 + RDT, 2);
        mmio_write32(bar0 + RCTL, RCTL_LOOPBACK);
    }
}

/// The bytes of the frame receive descriptor `k` got, once the NIC wrote it back (within
/// 200 ms).
fn received(khz: u64, k: usize) -> Option<&'static [u8]> {
    // SAFETY: as in `transmit`; the NIC is done with the buffer once the descriptor's done
    // bit is set.
    unsafe {
        let dma = core::ptr::addr_of_mut!(DMA);
        let desc = (core::ptr::addr_of_mut!((*dma).rx_ring) as *mut u8).add(16 * k);
        for _ in 0..200 {
            if core::ptr::read_volatile(desc.add(12)) & STA_DD != 0 {
                let len = core::ptr::read_volatile(desc.add(8) as *const u16) as usize;
                let buffer = core::ptr::addr_of!((*dma).rx[k]) as *const u8;
                return Some(core::slice::from_raw_parts(buffer, len.min(RX_BUFFER)));
            }
            spin_ms(khz, 1);
        }
        None
    }
}

/// This VM's own frame as [`transmit`] wrote it.
fn own_frame() -> &'static [u8] {
    // SAFETY: written before the NIC read it; read-only afterwards.
    unsafe { &*core::ptr::addr_of!((*core::ptr::addr_of!(DMA)).frame) }
}
const ROUNDS: u32 = 3;

fn list_bus(wanted: u32) -> Option<u8> {
    let mut nic = None;
    for dev in 0..32u8 {
        let id = cf8_read(dev, 0);
        if id & 0xFFFF == 0xFFFF {
            continue;
        }
        println!(
            "passthrough: 00:{:02x}.0 {:04x}:{:04x}",
            dev,
            id & 0xFFFF,
            id >> 16
        );
        if id == wanted {
            nic = Some(dev);
        }
    }
    nic
}

/// Waits up to `ms` for `vector` to have arrived `n` times.
fn wait_count(khz: u64, ms: u64, vector: u8, n: u32) -> bool {
    for _ in 0..ms {
        if count(0, vector) >= n {
            return true;
        }
        spin_ms(khz, 1);
    }
    count(0, vector) >= n
}

/// `device=VVVV:DDDD` (vendor:device), the e1000e by default.
fn wanted(p: &Platform) -> u32 {
    p.arg("device")
        .and_then(|v| {
            let (vendor, device) = v.split_once(':')?;
            let vendor = u32::from_str_radix(vendor, 16).ok()?;
            let device = u32::from_str_radix(device, 16).ok()?;
            Some(device << 16 | vendor)
        })
        .unwrap_or(E1000E)
}

pub fn run(p: &Platform, khz: u64, verdict: &mut Verdict) {
    set_ap_mode(AP_MODE_HALT);
    let id = wanted(p);
    let found = list_bus(id);
    if p.flag("absent") {
        println!(
            "passthrough: {:04x}:{:04x} on this bus: {}",
            id & 0xFFFF,
            id >> 16,
            found.is_some()
        );
        verdict.check(found.is_none(), "another VM's device is visible");
        return;
    }
    let Some(dev) = found else {
        verdict.check(false, "the device is not on the bus");
        return;
    };
    if id == UHCI {
        uhci(&Device { dev, ecam: 0 }, verdict);
        return;
    }
    if id == crate::edu::EDU {
        crate::edu::run(&Device { dev, ecam: 0 }, p, khz, verdict);
        return;
    }
    let d = Device { dev, ecam: 0 };
    let (bar0, size0) = d.size_bar(0, false);
    println!("passthrough: BAR0 {:#x} size {:#x}", bar0, size0);
    verdict.check(size0 == 0x2_0000, "BAR0 is not the NIC's 128 KiB");
    println!("passthrough: expansion ROM {:#x}", d.cfg(0x30));
    // Memory decoding and bus mastering (MSI writes are bus master cycles).
    d.set_cfg(4, 0x6);
    let status = mmio_read32(bar0 + STATUS);
    println!("passthrough: STATUS {:#x}", status);
    verdict.check(status != u32::MAX, "BAR0 does not reach the NIC");

    let msi = d.capability(0x05);
    let msix = d.capability(0x11);
    println!(
        "passthrough: MSI capability: {}, MSI-X capability: {}",
        msi.is_some(),
        msix.is_some()
    );
    verdict.check(msix.is_some(), "MSI-X is not listed");
    let Some(at) = msi else {
        verdict.check(false, "no MSI capability");
        return;
    };
    prepare_cpu();
    // INTx: the NIC's line is the scenario's pt_intx, remapped to this VM's vIOAPIC pin.
    let intx_pin = p.arg("intx").and_then(|v| v.parse::<u32>().ok());
    if let Some(pin) = intx_pin {
        let taken = intx(bar0, pin, khz);
        println!(
            "passthrough: INTx on vIOAPIC pin {}: {} of {} arrived on vector {:#x}",
            pin, taken, ROUNDS, INTX_VECTOR
        );
        verdict.check(taken == ROUNDS, "INTx lost");
    }
    aim_msi(&d, at, VECTOR);
    // SAFETY: the counting IDT handles every vector.
    unsafe { asm!("sti", options(nomem, nostack)) };
    mmio_write32(bar0 + IMS, CAUSE_TXDW);
    let mut arrived = 0;
    let mut slowest = 0;
    for round in 1..=ROUNDS {
        let sent = rdtsc();
        mmio_write32(bar0 + ICS, CAUSE_TXDW);
        if wait_count(khz, 1000, VECTOR, round) {
            arrived += 1;
            slowest = slowest.max(rdtsc().wrapping_sub(sent));
        }
        // Reading the cause register acknowledges it.
        let _ = mmio_read32(bar0 + ICR);
    }
    println!(
        "passthrough: MSI {} of {} arrived on vector {:#x}",
        arrived, ROUNDS, VECTOR
    );
    println!("passthrough: slowest MSI took {} ms", slowest / khz.max(1));
    verdict.check(arrived == ROUNDS, "MSI lost");

    // MSI off: the NIC falls back to INTx, which this VM has no route for.
    d.set_cfg(at, d.cfg(at) & !(1 << 16));
    let before = count(0, VECTOR);
    mmio_write32(bar0 + ICS, CAUSE_TXDW);
    spin_ms(khz, 100);
    let after = count(0, VECTOR);
    println!("passthrough: with MSI off: {} more", after - before);
    verdict.check(after == before, "an interrupt arrived with MSI off");

    mmio_write32(bar0 + IMC, u32::MAX);
    let _ = mmio_read32(bar0 + ICR);

    if let Some(at) = msix {
        msix_interrupts(&d, at, bar0, khz, verdict);
    }
    // With MSI and MSI-X off again the NIC interrupts through its line, as a driver that
    // falls back (or a rebooted guest) finds it.
    if let Some(pin) = intx_pin {
        let taken = intx(bar0, pin, khz);
        println!(
            "passthrough: INTx again after MSI and MSI-X: {} of {} arrived on vector {:#x}",
            taken, ROUNDS, INTX_VECTOR
        );
        verdict.check(taken == ROUNDS, "INTx lost after MSI and MSI-X");
    }

    // `iommu=ADDR`: the IOMMU's registers, which this VM must not reach; an attempt to turn
    // translation off there (GCMD = 0) must leave the DMA checks below as they are.
    if let Some(regs) = hex_arg(p, "iommu") {
        mmio_write32(regs + 0x18, 0);
        println!(
            "passthrough: IOMMU registers at {:#x}: version {:#x}, status {:#x}",
            regs,
            mmio_read32(regs),
            mmio_read32(regs + 0x1C)
        );
    }
    // Good packets transmitted (clear on read): a frame whose bytes the NIC could not read is
    // dropped, not counted.
    let _ = mmio_read32(bar0 + GPTC);
    receive_loopback(bar0);
    let (done, head) = transmit(bar0, khz);
    let sent = mmio_read32(bar0 + GPTC);
    println!(
        "passthrough: DMA: descriptor done {}, head {}, frames sent {}",
        done, head, sent
    );
    let back = received(khz, 0).is_some_and(|f| f.len() >= 60 && f[..60] == own_frame()[..60]);
    println!(
        "passthrough: loopback: own frame received back intact: {}",
        back
    );
    verdict.check(
        done && head == 1 && sent == 1 && back,
        "the NIC's DMA did not reach this VM's memory",
    );
    // The hypervisor's IOMMU must refuse a frame outside this VM's RAM (the test reads its
    // report); the NIC only sees a failed read.
    let outside = outside_gpa(p);
    let done = transmit_from(bar0, khz, 1, outside);
    println!(
        "passthrough: DMA read of {:#x} (not this VM's memory) queued; descriptor done {}, \
         frames sent {}",
        outside,
        done,
        mmio_read32(bar0 + GPTC)
    );
    // What the NIC read there comes back through the loopback: nothing of the other memory's
    // content when the IOMMU refused the read.
    match received(khz, 1) {
        Some(f) => println!(
            "passthrough: loopback: frame from {:#x}: {} bytes, {} of them non-zero",
            outside,
            f.len(),
            f.iter().filter(|&&b| b != 0).count()
        ),
        None => println!(
            "passthrough: loopback: frame from {:#x}: not received",
            outside
        ),
    }
    // `msi_dma=ADDR:DATA`: the NIC writes a frame of DATA dwords at ADDR, in the local APICs'
    // interrupt window, as a guest that aims its device's DMA there would: each dword is an
    // interrupt request. The IOMMU must not let the device raise what it was not given.
    if let Some((addr, data)) = p.arg("msi_dma").and_then(|v| {
        let (a, d) = v.split_once(':')?;
        Some((
            u64::from_str_radix(a.trim_start_matches("0x"), 16).ok()?,
            u32::from_str_radix(d.trim_start_matches("0x"), 16).ok()?,
        ))
    }) {
        let done = dma_into(bar0, khz, addr, data);
        println!(
            "passthrough: DMA of {:#x} dwords to {:#x} queued; descriptor done {}",
            data, addr, done
        );
    }
}

/// Aims the MSI capability at `at` at this CPU's `vector` (APIC ID 0: the BSP) and turns it
/// on.
pub fn aim_msi(d: &Device, at: u16, vector: u8) {
    let wide = d.cfg(at) >> 16 & 1 << 7 != 0;
    d.set_cfg(at + 4, 0xFEE0_0000);
    let data_at = if wide {
        d.set_cfg(at + 8, 0);
        at + 12
    } else {
        at + 8
    };
    d.set_cfg(data_at, u32::from(vector));
    d.set_cfg(at, d.cfg(at) | 1 << 16);
}

/// The guest-physical address the DMA checks aim outside this VM's memory: `dma_outside=ADDR`,
/// else the first 1 GiB boundary at or above the end of its RAM.
pub fn outside_gpa(p: &Platform) -> u64 {
    hex_arg(p, "dma_outside")
        .unwrap_or_else(|| OUTSIDE_GPA.max(p.ram_bytes().next_multiple_of(OUTSIDE_GPA)))
}

/// `key=0xHEX` from the command line.
fn hex_arg(p: &Platform, key: &str) -> Option<u64> {
    let v = p.arg(key)?;
    u64::from_str_radix(v.strip_prefix("0x").unwrap_or(v), 16).ok()
}

/// Where the second frame claims to be by default (`dma_outside=ADDR` chooses): beyond this
/// VM's RAM.
const OUTSIDE_GPA: u64 = 0x4000_0000;

/// MSI-X through the hypervisor's virtual table: every entry to its own vector, the NIC's
/// transmit queue 0 on entry 1 and receive queue 0 on entry 3 (IVAR), each raised through
/// the cause set register; then entry 3 masked (the interrupt waits in the PBA) and unmasked
/// (it arrives).
fn msix_interrupts(d: &Device, at: u16, bar0: u64, khz: u64, verdict: &mut Verdict) {
    let Some(m) = d.msix() else { return };
    let table_bar = u64::from(d.cfg(0x10 + 4 * m.table_bar as u16) & !0xF);
    let pba = d.cfg(at + 8);
    let pba_addr = u64::from(d.cfg(0x10 + 4 * (pba & 7) as u16) & !0xF) + u64::from(pba & !7);
    println!(
        "passthrough: MSI-X {} entries, table in BAR{} at {:#x}",
        m.vectors, m.table_bar, table_bar
    );
    verdict.check(
        m.vectors == 5,
        "the NIC's MSI-X table does not have 5 entries",
    );
    let _ = d.enable_msix(table_bar, MSIX_VECTORS);
    // IVAR: receive queue 0 to entry 3, transmit queue 0 to entry 1 (bit 3 of each: valid).
    mmio_write32(bar0 + IVAR, (3 | 8) | (1 | 8) << 8);
    mmio_write32(bar0 + IMS, CAUSE_RXQ0 | CAUSE_TXQ0);
    let mut arrived = [0u32; 2];
    for (k, (cause, entry)) in [(CAUSE_TXQ0, 1u8), (CAUSE_RXQ0, 3)].into_iter().enumerate() {
        let vector = MSIX_VECTORS + entry;
        let base = count(0, vector);
        for round in 1..=ROUNDS {
            mmio_write32(bar0 + ICS, cause);
            if wait_count(khz, 1000, vector, base + round) {
                arrived[k] += 1;
            }
            mmio_write32(bar0 + ICR, u32::MAX);
        }
    }
    println!(
        "passthrough: MSI-X entry 1 (TxQ0) {} of {} on vector {:#x}, entry 3 (RxQ0) {} of {} on vector {:#x}",
        arrived[0],
        ROUNDS,
        MSIX_VECTORS + 1,
        arrived[1],
        ROUNDS,
        MSIX_VECTORS + 3
    );
    verdict.check(arrived == [ROUNDS; 2], "MSI-X lost");
    let entry3 = table_bar + u64::from(m.table_offset) + 3 * 16;
    let vector = MSIX_VECTORS + 3;
    mmio_write32(entry3 + 12, 1);
    let before = count(0, vector);
    mmio_write32(bar0 + ICS, CAUSE_RXQ0);
    spin_ms(khz, 100);
    let masked = count(0, vector) - before;
    let pending = mmio_read32(pba_addr) >> 3 & 1;
    mmio_write32(entry3 + 12, 0);
    let delivered = wait_count(khz, 1000, vector, before + 1);
    println!(
        "passthrough: MSI-X entry 3 masked: {} arrived, pending bit {}; unmasked: delivered {}",
        masked, pending, delivered
    );
    verdict.check(
        masked == 0 && pending == 1 && delivered,
        "a masked MSI-X entry did not hold its interrupt pending",
    );
    mmio_write32(bar0 + IMC, u32::MAX);
    mmio_write32(bar0 + ICR, u32::MAX);
    d.set_cfg(at, d.cfg(at) & !(1 << 31));
}

/// Queues one broadcast frame; whether the NIC wrote the done bit back, and its ring head.
fn transmit(bar0: u64, khz: u64) -> (bool, u32) {
    // SAFETY: this CPU alone uses the buffers; the NIC reads and writes them by DMA, so every
    // access is volatile. The guest is identity-mapped: addresses are guest-physical.
    unsafe {
        let dma = core::ptr::addr_of_mut!(DMA);
        let frame = core::ptr::addr_of_mut!((*dma).frame) as *mut u8;
        for i in 0..64 {
            let b = if i < 12 { 0xFF } else { i as u8 };
            core::ptr::write_volatile(frame.add(i), b);
        }
        let ring = core::ptr::addr_of_mut!((*dma).ring) as *mut u8;
        for i in 0..128 {
            core::ptr::write_volatile(ring.add(i), 0);
        }
        core::ptr::write_volatile(ring as *mut u64, frame as u64);
        core::ptr::write_volatile(ring.add(8) as *mut u16, 60);
        core::ptr::write_volatile(ring.add(11), CMD_EOP_IFCS_RS);
        set_ring(bar0 + TDBAL, ring as u64);
        mmio_write32(bar0 + TCTL, TCTL_EN | TCTL_PSP);
        mmio_write32(bar0 + TDT, 1);
        let mut done = false;
        for _ in 0..1000 {
            if core::ptr::read_volatile(ring.add(12)) & STA_DD != 0 {
                done = true;
                break;
            }
            spin_ms(khz, 1);
        }
        (done, mmio_read32(bar0 + TDH))
    }
}

/// After [`transmit`]: queues transmit descriptor `k` (1 to 7) with its frame at
/// `frame_gpa`; whether the NIC wrote that descriptor's done bit back.
fn transmit_from(bar0: u64, khz: u64, k: usize, frame_gpa: u64) -> bool {
    // SAFETY: as in `transmit`; descriptor k is the ring's bytes 16k..16k+16.
    unsafe {
        let ring = core::ptr::addr_of_mut!((*core::ptr::addr_of_mut!(DMA)).ring) as *mut u8;
        let desc = ring.add(16 * k);
        core::ptr::write_volatile(desc as *mut u64, frame_gpa);
        core::ptr::write_volatile(desc.add(8) as *mut u16, 60);
        core::ptr::write_volatile(desc.add(11), CMD_EOP_IFCS_RS);
        core::ptr::write_volatile(desc.add(12), 0);
        mmio_write32(bar0 + TDT, (k as u32 + 1) % 8);
        for _ in 0..1000 {
            if core::ptr::read_volatile(desc.add(12)) & STA_DD != 0 {
                return true;
            }
            spin_ms(khz, 1);
        }
        false
    }
}

/// Loops a frame of `data` dwords back into receive descriptor 2, whose buffer is at `addr`;
/// whether the NIC wrote the transmit descriptor back.
fn dma_into(bar0: u64, khz: u64, addr: u64, data: u32) -> bool {
    // SAFETY: as in `transmit`; receive descriptor 2 is the ring's bytes 32..48.
    let frame = unsafe {
        let dma = core::ptr::addr_of_mut!(DMA);
        let frame = core::ptr::addr_of_mut!((*dma).frame) as *mut u32;
        for i in 0..16 {
            core::ptr::write_volatile(frame.add(i), data);
        }
        let rx = (core::ptr::addr_of_mut!((*dma).rx_ring) as *mut u8).add(32);
        for i in 0..16 {
            core::ptr::write_volatile(rx.add(i), 0);
        }
        core::ptr::write_volatile(rx as *mut u64, addr);
        frame as u64
    };
    mmio_write32(bar0 + RDT, 3);
    let done = transmit_from(bar0, khz, 2, frame);
    // The write into the interrupt window follows the transmit.
    spin_ms(khz, 10);
    done
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: a port of the pass-through function's I/O BAR.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack)) };
    v
}

fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as for `inb`.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") v, options(nomem, nostack)) };
    v
}

fn outw(port: u16, v: u16) {
    // SAFETY: as for `inb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack)) };
}

/// The UHCI controller through its I/O BAR: sized, decoded, its reset values read and a
/// register written and read back (each access forwarded to the hardware's ports).
fn uhci(d: &Device, verdict: &mut Verdict) {
    let bar = d.cfg(0x20);
    d.set_cfg(0x20, u32::MAX);
    let mask = d.cfg(0x20);
    d.set_cfg(0x20, bar);
    let base = (bar & 0xFFFC) as u16;
    let size = (!(mask & 0xFFFC) & 0xFFFF) + 1;
    println!(
        "passthrough: BAR4 I/O {:#x} size {:#x} (I/O: {})",
        base,
        size,
        bar & 1 == 1
    );
    verdict.check(bar & 1 == 1 && size == 32, "BAR4 is not 32 I/O ports");
    d.set_cfg(4, 0x1);
    let sofmod = inb(base + SOFMOD);
    outw(base + USBINTR, 0x5);
    let intr = inw(base + USBINTR);
    outw(base + USBINTR, 0);
    println!(
        "passthrough: SOFMOD {:#x}, USBINTR {:#x} after writing 0x5",
        sofmod, intr
    );
    verdict.check(sofmod == 0x40 && intr == 0x5, "the controller's registers");
}
