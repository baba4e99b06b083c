//! `platform`: exercises a VM's interrupt platform. The command line picks the mode:
//! * `attacker`: programs every interrupt source of the machine it sees to reach every CPU
//!   and sends IPIs, NMI, INIT and SIPI to everyone, counting what reaches itself;
//! * `victim`: counts every vector its CPUs receive while it listens, and passes only if
//!   nothing arrived that it did not send itself;
//! * `timer`: measures the local APIC timer against the TSC in one-shot, periodic and
//!   TSC-deadline modes, in xAPIC and x2APIC mode;
//! * `ivshmem`: the virtual PCI bus and an IVSHMEM device shared with a peer VM (see
//!   `ivshmem.rs`).
//! * `rtvm`: the guest of a `lapic_passthrough` VM: the physical local APIC's timer and IPIs
//!   that may and may not leave the VM.
//! * `vuart`: one end of a VM-to-VM vUART (legacy, or with `pci` ACRN's PCI vUART), sending
//!   or receiving a checked stream.
//! * `passthrough`: a physical PCI function the VM owns (`pci_devs`): its BARs, MSI and
//!   capability list; with `absent`, that another VM's function is not on the bus.
//!
//! Line formats are in tests/guests/README.md.
#![no_std]
#![no_main]

mod attacker;
mod edu;
mod idt;
mod ivshmem;
mod lapic;
mod passthrough;
mod pci;
mod rtvm;
mod timer;
mod victim;
mod vuart;

use core::sync::atomic::Ordering;
use guest_common::arch::{cpuid, halt_forever, rdtsc};
use guest_common::platform::{identify, Platform, Verdict};
use guest_common::println;

/// The TSC frequency in kHz from ACRN's timing leaf (CPUID 0x40000010 EAX), when the
/// hypervisor offers it.
pub fn tsc_khz() -> Option<u64> {
    let (max, _, _, _) = cpuid(0x4000_0000, 0);
    if !(0x4000_0010..0x4001_0000).contains(&max) {
        return None;
    }
    match cpuid(0x4000_0010, 0).0 {
        0 => None,
        k => Some(u64::from(k)),
    }
}

/// `key=N` from the command line, else `default`.
pub fn arg_u64(p: &Platform, key: &str, default: u64) -> u64 {
    p.arg(key).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Spins (interrupts as they are) until `ms` milliseconds of TSC time have passed.
pub fn spin_ms(tsc_khz: u64, ms: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < ms * tsc_khz {
        core::hint::spin_loop();
    }
}

/// Incremented at every entry of `kmain`. It lives in .data, which no boot path clears, so a
/// guest that was somehow started again prints `boot 2`.
static mut BOOTS: u32 = 0;

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    // SAFETY: only the BSP runs kmain, once per boot.
    let boot = unsafe {
        let b = core::ptr::addr_of_mut!(BOOTS);
        *b += 1;
        *b
    };
    // APs run the mode's AP code once they are up (set before identify starts them).
    guest_common::smp::on_ap_start(ap_entry);
    let p = identify("platform", magic, info);
    // `pci_console`: the VM's console is a PCI vUART (what is printed before this is lost):
    // the one at device `pci_console_dev` where the VM has PCI vUART links too (ACRN gives
    // them all the same IDs), else the first.
    if p.flag("pci_console") {
        let at = p.arg("pci_console_dev").and_then(|v| v.parse::<u8>().ok());
        match pci::find_all(pci::PCI_VUART).find(|&d| at.is_none_or(|a| a == d)) {
            Some(dev) => {
                pci::CONSOLE_DEV.store(dev, Ordering::Relaxed);
                let d = pci::Device { dev, ecam: 0 };
                d.set_cfg(4, 0x2);
                guest_common::serial::use_window(u64::from(d.cfg(0x10) & !0xF));
                println!("platform: console on the PCI vUART at 00:{:02x}.0", dev);
            }
            None => println!("platform: pci_console: no 9710:9900 on bus 0"),
        }
    }
    println!("platform: boot {}", boot);
    let mut verdict = Verdict::new();
    verdict.check(boot == 1, "started more than once");
    let Some(khz) = tsc_khz() else {
        println!("platform: no TSC frequency in CPUID 0x40000010");
        verdict.check(false, "no TSC frequency");
        verdict.print();
        halt_forever()
    };
    println!("platform: tsc_khz={}", khz);
    if p.flag("highmem") {
        highmem(&p, &mut verdict);
    }
    if p.flag("attacker") {
        attacker::run(&p, khz);
    } else if p.flag("victim") {
        victim::run(&p, khz, &mut verdict);
    } else if p.flag("timer") {
        timer::run(&p, khz, &mut verdict);
    } else if p.flag("ivshmem") {
        ivshmem::run(&p, khz, &mut verdict);
    } else if p.flag("vuart") {
        vuart::run(&p, khz, &mut verdict);
    } else if p.flag("passthrough") {
        passthrough::run(&p, khz, &mut verdict);
    } else if p.flag("rtvm") {
        rtvm::run(&p, khz, &mut verdict);
        verdict.print();
        rtvm::end(&p);
    } else {
        println!(
            "platform: no mode on the command line (attacker, victim, timer, ivshmem, vuart or rtvm)"
        );
        verdict.check(false, "no mode");
    }
    verdict.print();
    halt_forever()
}

/// `highmem`: the RAM the e820 map lists above 4 GiB is this VM's: a pattern written at the
/// first and the last word of each such range reads back.
fn highmem(p: &Platform, verdict: &mut Verdict) {
    const FOUR_GIB: u64 = 1 << 32;
    let map = match &p.boot {
        Ok(mb) => mb.mmap.as_ref().ok().copied().flatten(),
        Err(_) => None,
    };
    let Some(map) = map else {
        verdict.check(false, "highmem: no e820 map");
        return;
    };
    let mut ranges = 0;
    let mut intact = true;
    for e in map
        .entries()
        .iter()
        .filter(|e| e.kind == 1 && e.base >= FOUR_GIB)
    {
        let mut ok = true;
        for at in [e.base, e.end() - 8] {
            let pattern = 0xA5C3_0000_0000_0000 ^ at;
            ok &= guest_common::paging::map_high(at).is_some_and(|ptr| {
                // SAFETY: RAM of this VM by its e820 map, mapped just now; nothing else uses it.
                unsafe {
                    core::ptr::write_volatile(ptr, pattern);
                    core::ptr::read_volatile(ptr) == pattern
                }
            });
        }
        println!(
            "highmem: {:#x}-{:#x}: pattern {}",
            e.base,
            e.end(),
            if ok { "read back" } else { "LOST" }
        );
        intact &= ok;
        ranges += 1;
    }
    println!("highmem: {} RAM range(s) above 4 GiB", ranges);
    verdict.check(ranges > 0, "highmem: no RAM above 4 GiB");
    verdict.check(intact, "highmem: a pattern did not read back");
}

/// What every AP runs once it is online: count interrupts with `sti; hlt` until the BSP says
/// the mode is over (see [`victim::ap_listen`]).
fn ap_entry(index: u32) -> ! {
    victim::ap_listen(index)
}
