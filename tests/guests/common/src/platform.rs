//! What every guest prints first: how it was booted and what machine it sees.

use crate::acpi::{self, Acpi, AcpiError};
use crate::arch::cpuid;
use crate::mem::GuestMem;
use crate::multiboot::{MultibootError, MultibootInfo};
use crate::println;
use crate::smp::{self, SmpError};
use crate::text::FixedStr;

const MIB: u64 = 1 << 20;

/// The guest's view of its VM, gathered and printed by [`identify`].
pub struct Platform {
    pub boot: Result<MultibootInfo, MultibootError>,
    pub acpi: Result<Acpi, AcpiError>,
    /// Enabled CPUs in the MADT (0 without a MADT).
    pub cpus: usize,
    /// CPUs that actually started (BSP included).
    pub online: u32,
    pub smp: Result<(), SmpError>,
    /// CPUID 0x40000000 signature; None when CPUID.1:ECX.hypervisor is clear.
    pub hypervisor: Option<FixedStr<12>>,
}

impl Platform {
    pub fn cmdline(&self) -> &str {
        match &self.boot {
            Ok(MultibootInfo {
                cmdline: Ok(Some(c)),
                ..
            }) => c.as_str(),
            _ => "",
        }
    }

    pub fn ram_bytes(&self) -> u64 {
        self.boot.as_ref().map_or(0, MultibootInfo::ram_bytes)
    }

    /// Usable RAM in MiB, rounded up.
    pub fn memory_mib(&self) -> u64 {
        self.ram_bytes().div_ceil(MIB)
    }

    pub fn ram_top(&self) -> u64 {
        self.boot.as_ref().map_or(0, MultibootInfo::ram_top)
    }

    /// The value of `key=` on the command line, if present.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.cmdline()
            .split(' ')
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }

    /// Whether the bare word `key` is on the command line.
    pub fn flag(&self, key: &str) -> bool {
        self.cmdline().split(' ').any(|w| w == key)
    }
}

/// CPUID hypervisor signature (leaf 0x40000000, EBX-ECX-EDX), NULs dropped.
pub fn hypervisor_signature() -> Option<FixedStr<12>> {
    let (_, _, ecx, _) = cpuid(1, 0);
    if ecx & (1 << 31) == 0 {
        return None;
    }
    let (_, b, c, d) = cpuid(0x4000_0000, 0);
    let mut s = FixedStr::new();
    for byte in [b, c, d]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .filter(|&x| x != 0)
    {
        s.push(byte);
    }
    Some(s)
}

/// Parses the boot information and ACPI, starts the APs and prints the identification
/// lines (formats in tests/guests/README.md).
pub fn identify(name: &str, magic: u32, info: u32) -> Platform {
    crate::serial::init();
    crate::idt::load();
    println!("guest: {}", name);

    let mut boot = MultibootInfo::parse(&GuestMem::new(), magic, info);
    // From here on, reads are limited to what the e820 map describes (when there is one)
    // plus the legacy BIOS area where the RSDP may sit.
    let mut mem = GuestMem::new();
    if let Ok(MultibootInfo {
        mmap: Ok(Some(map)),
        ..
    }) = &boot
    {
        map.entries().iter().for_each(|e| mem.allow(e.base, e.len));
        mem.allow(0xE0000, 0x20000);
    }
    match &mut boot {
        Ok(mb) => {
            if let Err(e) = mb.read_strings(&mem) {
                println!("warn: multiboot strings: {}", e);
            }
            println!(
                "boot: multiboot1 info={:#x} flags={:#x}",
                mb.info_addr, mb.flags
            );
            match &mb.loader_name {
                Ok(Some(n)) => println!("loader: {}", n),
                Ok(None) => {}
                Err(e) => println!("warn: loader name: {}", e),
            }
        }
        Err(e) => println!("boot: error: {}", e),
    }
    let (cmdline, map) = match &boot {
        Ok(mb) => {
            if let Err(e) = &mb.cmdline {
                println!("warn: cmdline: {}", e);
            }
            (
                mb.cmdline.ok().flatten(),
                mb.mmap.as_ref().ok().copied().flatten(),
            )
        }
        Err(_) => (None, None),
    };
    println!("cmdline: {}", cmdline.as_ref().map_or("", FixedStr::as_str));
    if let Ok(mb) = &boot {
        match &mb.mmap {
            Ok(Some(m)) => {
                for e in m.entries() {
                    println!("e820: {:#x}-{:#x} type {}", e.base, e.end(), e.kind);
                }
                if m.truncated {
                    println!("warn: e820 map truncated");
                }
            }
            Ok(None) => println!("warn: no e820 map"),
            Err(e) => println!("warn: e820: {}", e),
        }
    }

    let acpi = acpi::discover(&mem);
    let cpus = match &acpi {
        Ok(a) => {
            println!(
                "acpi: rsdp={:#x} rev={} madt={:#x} lapic={:#x}",
                a.rsdp, a.revision, a.madt.addr, a.madt.lapic_base
            );
            a.madt.enabled
        }
        Err(e) => {
            println!("acpi: error: {}", e);
            0
        }
    };
    let mut platform = Platform {
        boot,
        acpi,
        cpus,
        online: 1,
        smp: Ok(()),
        hypervisor: None,
    };
    println!("memory: {}", platform.memory_mib());
    println!("memory-top: {:#x}", platform.ram_top());
    println!("cpus: {}", cpus);

    println!("cpu 0 up");
    let nosmp = platform.cmdline().split(' ').any(|w| w == "nosmp");
    if nosmp {
        println!("warn: smp: not starting APs (nosmp)");
    } else if let Ok(a) = &platform.acpi {
        match smp::start_aps(&a.madt, map.as_ref()) {
            Ok(n) => platform.online = n,
            Err(e) => {
                println!("warn: smp: {}", e);
                platform.smp = Err(e);
            }
        }
    }
    println!("cpus-online: {}", platform.online);

    platform.hypervisor = hypervisor_signature();
    match &platform.hypervisor {
        Some(s) if s.is_empty() => println!("hypervisor: unnamed"),
        Some(s) => println!("hypervisor: {}", s),
        None => println!("hypervisor: none"),
    }
    platform
}

/// Collects failed checks and prints the final `verdict:` line.
pub struct Verdict {
    failed: [&'static str; 8],
    count: usize,
}

impl Default for Verdict {
    fn default() -> Self {
        Self::new()
    }
}

impl Verdict {
    pub const fn new() -> Self {
        Self {
            failed: [""; 8],
            count: 0,
        }
    }

    pub fn check(&mut self, ok: bool, what: &'static str) {
        if !ok && self.count < self.failed.len() {
            self.failed[self.count] = what;
            self.count += 1;
        }
    }

    pub fn passed(&self) -> bool {
        self.count == 0
    }

    /// Prints `verdict: PASS` or `verdict: FAIL (a, b, ...)`.
    pub fn print(&self) {
        use core::fmt::Write as _;
        let mut c = crate::serial::Console::lock();
        if self.passed() {
            let _ = c.write_str("verdict: PASS\n");
            return;
        }
        let _ = c.write_str("verdict: FAIL (");
        for (i, f) in self.failed[..self.count].iter().enumerate() {
            let _ = write!(c, "{}{}", if i > 0 { ", " } else { "" }, f);
        }
        let _ = c.write_str(")\n");
    }
}
