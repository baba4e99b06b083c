//! `vuart`: one end of a VM-to-VM vUART: a 16550 at `port=`, interrupting at ISA `irq=`
//! through the I/O APIC, edge-triggered; or with `pci`, ACRN's PCI vUART (MCS9900 9710:9900)
//! found on bus 0, its registers the first bytes of BAR0, interrupting through its MSI-X
//! vector. `role=send` streams `bytes=` pseudo-random bytes,
//! refilling the 16-byte transmit FIFO from its THR-empty interrupt; `role=recv` takes them
//! more slowly (its receive interrupt only wakes the main loop, which reads byte by byte with
//! `delay=` TSC ticks per byte) and checks every byte against the same sequence. Both print
//! the stream's FNV-1a checksum and the throughput in bytes per second of TSC time.

use crate::attacker::ioapic_write;
use crate::pci::{self, Device};
use crate::victim::{prepare_cpu, set_ap_mode, AP_MODE_HALT};
use crate::{arg_u64, idt};
use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use guest_common::arch::{inb, outb, rdtsc, spin_tsc};
use guest_common::platform::{Platform, Verdict};
use guest_common::println;

/// The vector the vUART's I/O APIC pin is programmed with.
const VECTOR: u8 = 0x60;

const THR: u16 = 0;
const IER: u16 = 1;
const IIR: u16 = 2;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;
const MSR: u16 = 6;

const IER_RDA: u8 = 0x01;
const IER_THRE: u8 = 0x02;
const IER_RLS: u8 = 0x04;
const MCR_DTR_RTS_OUT2: u8 = 0x0B;
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_TEMT: u8 = 0x40;
const MSR_CTS_DSR: u8 = 0x30;

/// The UART's base port, set before interrupts are enabled.
static BASE: AtomicU32 = AtomicU32::new(0);
/// The PCI vUART's register window (BAR0), or 0 for a port UART.
static WINDOW: AtomicU64 = AtomicU64::new(0);
/// Sender: bytes to send and sent; receiver: set by the interrupt, taken by the main loop.
static TOTAL: AtomicU64 = AtomicU64::new(0);
static SENT: AtomicU64 = AtomicU64::new(0);
static RX_READY: AtomicBool = AtomicBool::new(false);
static STREAM: AtomicU32 = AtomicU32::new(0);
static FNV: AtomicU32 = AtomicU32::new(FNV_START);
static OVERRUNS: AtomicU32 = AtomicU32::new(0);
static UART_IRQS: AtomicU32 = AtomicU32::new(0);

/// TSC ticks between the sender's looks at LSR (each is a VM exit: few, so they cost little).
const SAMPLE_TICKS: u64 = 500_000;

const FNV_START: u32 = 0x811C_9DC5;

fn fnv(h: u32, b: u8) -> u32 {
    (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
}

/// The next byte of the stream (xorshift32's low byte).
fn next(state: &mut u32) -> u8 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x as u8
}

fn reg(off: u16) -> u16 {
    BASE.load(Ordering::Relaxed) as u16 + off
}

fn rd(off: u16) -> u8 {
    match WINDOW.load(Ordering::Relaxed) {
        // SAFETY: the vUART's ports belong to this guest.
        0 => unsafe { inb(reg(off)) },
        // SAFETY: BAR0 of the guest's PCI vUART (identity-mapped below 4 GiB), byte registers.
        w => unsafe { read_volatile((w + u64::from(off)) as *const u8) },
    }
}

fn wr(off: u16, v: u8) {
    match WINDOW.load(Ordering::Relaxed) {
        // SAFETY: as for `rd`.
        0 => unsafe { outb(reg(off), v) },
        // SAFETY: as for `rd`.
        w => unsafe { write_volatile((w + u64::from(off)) as *mut u8, v) },
    }
}

/// `key=0x..` or decimal.
fn arg_num(p: &Platform, key: &str) -> Option<u64> {
    let v = p.arg(key)?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The interrupt: serves every cause the UART reports until IIR says none is left (the pin
/// is edge-triggered, so a cause left pending would never interrupt again).
fn on_vector(vector: u8) {
    if vector != VECTOR {
        return;
    }
    UART_IRQS.fetch_add(1, Ordering::SeqCst);
    loop {
        let iir = rd(IIR);
        if iir & 1 != 0 {
            break;
        }
        match iir & 0x0F {
            0x06 => {
                if rd(LSR) & LSR_OE != 0 {
                    OVERRUNS.fetch_add(1, Ordering::SeqCst);
                }
            }
            // Received data: the main loop reads it; mask the source until then.
            0x04 | 0x0C => {
                wr(IER, IER_RLS);
                RX_READY.store(true, Ordering::SeqCst);
            }
            0x02 => fill_fifo(),
            _ => {
                rd(MSR);
            }
        }
    }
}

/// THR is empty: up to 16 bytes into the FIFO, and THRE interrupts off after the last.
fn fill_fifo() {
    let total = TOTAL.load(Ordering::SeqCst);
    let mut sent = SENT.load(Ordering::SeqCst);
    let mut state = STREAM.load(Ordering::SeqCst);
    let mut h = FNV.load(Ordering::SeqCst);
    for _ in 0..16 {
        if sent == total {
            break;
        }
        let b = next(&mut state);
        h = fnv(h, b);
        wr(THR, b);
        sent += 1;
    }
    if sent == total {
        wr(IER, IER_RLS);
    }
    STREAM.store(state, Ordering::SeqCst);
    FNV.store(h, Ordering::SeqCst);
    SENT.store(sent, Ordering::SeqCst);
}

/// Where the UART is and how it interrupts.
enum Link {
    Port { base: u16, irq: u8 },
    Pci { window: u64 },
}

fn program(link: &Link, fcr: u8) {
    match *link {
        Link::Port { base, .. } => BASE.store(u32::from(base), Ordering::SeqCst),
        Link::Pci { window } => WINDOW.store(window, Ordering::SeqCst),
    }
    wr(IER, 0);
    wr(LCR, 0x83);
    wr(THR, 1);
    wr(IER, 0);
    wr(LCR, 0x03);
    wr(0x2, fcr);
    // Clear what reset left: line status, data, modem deltas.
    rd(LSR);
    rd(MSR);
    while rd(LSR) & LSR_DR != 0 {
        rd(THR);
    }
    prepare_cpu();
    idt::on_vector(on_vector);
    // Edge-triggered, active high, fixed, physical destination: this CPU (APIC ID 0). A PCI
    // vUART's MSI-X vector was aimed there when it was found.
    if let Link::Port { irq, .. } = *link {
        let pin = u32::from(irq);
        ioapic_write(0x11 + 2 * pin, 0);
        ioapic_write(0x10 + 2 * pin, u32::from(VECTOR));
    }
}

/// ACRN's PCI vUART on bus 0: checks its identity and BARs, aims its MSI-X vector at
/// [`VECTOR`] on this CPU; its register window.
fn find_pci(verdict: &mut Verdict) -> Option<u64> {
    let console = pci::CONSOLE_DEV.load(Ordering::Relaxed);
    let Some(dev) = pci::find_all(pci::PCI_VUART).find(|&d| d != console) else {
        println!("vuart: no 9710:9900 on bus 0");
        verdict.check(false, "no PCI vUART");
        return None;
    };
    let d = Device { dev, ecam: 0 };
    let subsystem = d.cfg(0x2C);
    let class = d.cfg(8) >> 8;
    d.set_cfg(4, 0);
    let (bar0, size0) = d.size_bar(0, false);
    let (bar1, size1) = d.size_bar(1, false);
    let m = d.msix();
    println!(
        "vuart: pci 00:{:02x}.0 9710:9900 subsystem {:04x}:{:04x} class {:06x} BAR0 {:#x} size {:#x} BAR1 {:#x} size {:#x} msix vectors {}",
        dev,
        subsystem & 0xFFFF,
        subsystem >> 16,
        class,
        bar0,
        size0,
        bar1,
        size1,
        m.as_ref().map_or(0, |m| m.vectors)
    );
    verdict.check(
        subsystem == 0x1000_A000 && class == 0x07_00_02,
        "PCI vUART subsystem or class",
    );
    verdict.check(size0 == 4096 && size1 == 4096, "PCI vUART BAR sizes");
    verdict.check(
        m.is_some_and(|m| m.vectors == 1 && m.table_bar == 1),
        "PCI vUART MSI-X layout",
    );
    // Interrupts stay off until the stream starts (`program` sets up the IDT before).
    d.enable_msix(bar1, VECTOR)?;
    Some(bar0)
}

fn throughput(bytes: u64, ticks: u64, khz: u64) -> u64 {
    (bytes * khz * 1000).checked_div(ticks).unwrap_or(0)
}

pub fn run(p: &Platform, khz: u64, verdict: &mut Verdict) {
    set_ap_mode(AP_MODE_HALT);
    let link = if p.flag("pci") {
        let Some(window) = find_pci(verdict) else {
            return;
        };
        Link::Pci { window }
    } else {
        let (Some(port), Some(irq)) = (arg_num(p, "port"), arg_num(p, "irq")) else {
            println!("vuart: needs port= and irq= (or pci) on the command line");
            verdict.check(false, "no port or irq");
            return;
        };
        Link::Port {
            base: port as u16,
            irq: irq as u8,
        }
    };
    let bytes = arg_u64(p, "bytes", 65536);
    let seed = arg_u64(p, "seed", 0x2545_F491) as u32 | 1;
    let limit = arg_u64(p, "timeout_ms", 120_000) * khz;
    let sender = match p.arg("role") {
        Some("send") => true,
        Some("recv") => false,
        _ => {
            println!("vuart: role=send or role=recv");
            verdict.check(false, "no role");
            return;
        }
    };
    let role = if sender { "send" } else { "recv" };
    match link {
        Link::Port { base, irq } => println!(
            "vuart: role={} port={:#x} irq={} bytes={} seed={:#x}",
            role, base, irq, bytes, seed
        ),
        Link::Pci { window } => println!(
            "vuart: role={} pci window={:#x} bytes={} seed={:#x}",
            role, window, bytes, seed
        ),
    }
    STREAM.store(seed, Ordering::SeqCst);
    TOTAL.store(bytes, Ordering::SeqCst);
    // The sender's FIFO refills every 16 bytes; the receiver's trigger level is 14.
    program(&link, if sender { 0x07 } else { 0xC7 });
    if sender {
        send(khz, limit, verdict);
    } else {
        receive(p, khz, limit, verdict);
    }
}

fn send(khz: u64, limit: u64, verdict: &mut Verdict) {
    wr(MCR, MCR_DTR_RTS_OUT2);
    // The peer is ready when its DTR and RTS show as our DSR and CTS.
    let start = rdtsc();
    while rd(MSR) & MSR_CTS_DSR != MSR_CTS_DSR {
        if rdtsc().wrapping_sub(start) > limit {
            println!("vuart: the peer never raised DTR and RTS");
            verdict.check(false, "peer not ready");
            return;
        }
        spin_tsc(khz);
    }
    println!("vuart: peer ready (DSR and CTS up)");
    let total = TOTAL.load(Ordering::SeqCst);
    let (mut samples, mut held) = (0u64, 0u64);
    let start = rdtsc();
    // SAFETY: the IDT serves every vector.
    unsafe { asm!("sti", options(nomem, nostack)) };
    wr(IER, IER_THRE | IER_RLS);
    let mut timed_out = false;
    loop {
        let lsr = rd(LSR);
        let done = SENT.load(Ordering::SeqCst) == total;
        if done && lsr & LSR_TEMT != 0 {
            break;
        }
        // Every byte written moves to the peer at once unless its buffer is full: a
        // transmitter that is not empty is being held back.
        samples += 1;
        if lsr & LSR_TEMT == 0 {
            held += 1;
        }
        if rdtsc().wrapping_sub(start) > limit {
            timed_out = true;
            break;
        }
        spin_tsc(SAMPLE_TICKS);
    }
    let ticks = rdtsc().wrapping_sub(start);
    // SAFETY: as above.
    unsafe { asm!("cli", options(nomem, nostack)) };
    let sent = SENT.load(Ordering::SeqCst);
    println!(
        "vuart: sent {} bytes fnv={:#010x} in {} tsc ticks: {} bytes/s",
        sent,
        FNV.load(Ordering::SeqCst),
        ticks,
        throughput(sent, ticks, khz)
    );
    println!(
        "vuart: thre interrupts {}; transmitter held back in {} of {} samples",
        UART_IRQS.load(Ordering::SeqCst),
        held,
        samples
    );
    verdict.check(!timed_out && sent == total, "stream not sent in time");
}

fn receive(p: &Platform, khz: u64, limit: u64, verdict: &mut Verdict) {
    let delay = arg_u64(p, "delay", 2000);
    let total = TOTAL.load(Ordering::SeqCst);
    let mut want_state = STREAM.load(Ordering::SeqCst);
    let mut h = FNV_START;
    let (mut received, mut mismatches) = (0u64, 0u64);
    let mut first_mismatch = None;
    let mut first_at = 0;
    let mut overruns = 0;
    // SAFETY: the IDT serves every vector.
    unsafe { asm!("sti", options(nomem, nostack)) };
    wr(IER, IER_RDA | IER_RLS);
    wr(MCR, MCR_DTR_RTS_OUT2);
    println!("vuart: ready (DTR and RTS up)");
    let start = rdtsc();
    let mut timed_out = false;
    while received < total {
        if rdtsc().wrapping_sub(start) > limit {
            timed_out = true;
            break;
        }
        if !RX_READY.swap(false, Ordering::SeqCst) {
            core::hint::spin_loop();
            continue;
        }
        loop {
            let lsr = rd(LSR);
            if lsr & LSR_OE != 0 {
                overruns += 1;
            }
            if lsr & LSR_DR == 0 {
                break;
            }
            let b = rd(THR);
            if received == 0 {
                first_at = rdtsc();
            }
            let want = next(&mut want_state);
            if b != want {
                mismatches += 1;
                first_mismatch.get_or_insert(received);
            }
            h = fnv(h, b);
            received += 1;
            spin_tsc(delay);
        }
        // Data that came meanwhile raises the (edge) interrupt again once unmasked.
        wr(IER, IER_RDA | IER_RLS);
    }
    let ticks = rdtsc().wrapping_sub(first_at);
    // Anything after the stream is a byte too many.
    spin_tsc(10 * khz);
    let extra = rd(LSR) & LSR_DR != 0;
    // SAFETY: as above.
    unsafe { asm!("cli", options(nomem, nostack)) };
    let overruns = overruns + OVERRUNS.load(Ordering::SeqCst);
    println!(
        "vuart: received {} bytes fnv={:#010x} in {} tsc ticks: {} bytes/s",
        received,
        h,
        ticks,
        throughput(received, ticks, khz)
    );
    println!(
        "vuart: mismatches={} first_mismatch={} overruns={} extra={} rx interrupts {}",
        mismatches,
        first_mismatch.map_or(-1, |i| i as i64),
        overruns,
        extra,
        UART_IRQS.load(Ordering::SeqCst)
    );
    verdict.check(
        !timed_out && received == total,
        "stream not received in time",
    );
    verdict.check(mismatches == 0, "bytes lost or reordered");
    verdict.check(overruns == 0, "overrun");
    verdict.check(!extra, "bytes after the stream");
}
