//! Direct Linux boot as ACRN's acrn-dm does it (`core/sw_load_bzimage.c`,
//! `core/sw_load_common.c`), following the Linux x86 boot protocol
//! (Documentation/arch/x86/boot.rst):
//!
//! | guest-physical              | what                                           |
//! |-----------------------------|------------------------------------------------|
//! | 16 MiB                      | the whole bzImage; entry = 16 MiB + setup size |
//! | lowmem − RAMDISK − 2 KiB    | a 4-entry flat GDT                             |
//! | lowmem − RAMDISK            | the ramdisk (RAMDISK = size + 8 KiB, 4 KiB up) |
//! | lowmem − 8 KiB              | the command line                               |
//! | lowmem − 4 KiB              | the zero page (`boot_params`) with the e820    |
//!
//! The BSP starts in 32-bit protected mode, paging off (CR0 = ET|NE|PE), CS = 0x10, data
//! selectors 0x18, RSI = the zero page: Linux's 32-bit boot protocol entry.

use crate::memory::{GuestMemory, OutOfRange, HIGHMEM_BASE, LOWMEM_LIMIT};
use acrn_abi::regs::{AcrnDescriptorPtr, AcrnRegs, AcrnVcpuRegs};

/// Where ACRN's acrn-dm copies the bzImage.
pub const KERNEL_LOAD: u64 = 16 << 20;
/// Start of the PCI ECAM window, reserved in the e820 up to 4 GiB.
pub const PCI_ECAM_BASE: u64 = 0xE000_0000;
/// Most command-line bytes: the room between the command line and the entry-address slot.
pub const MAX_CMDLINE: usize = 2048 - 1;

/// e820 types.
pub const E820_RAM: u32 = 1;
/// Reserved.
pub const E820_RESERVED: u32 = 2;

/// The 32-bit flat GDT ACRN gives a bzImage guest: null, null, code 0x10, data 0x18.
pub const BOOT_GDT: [u64; 4] = [0, 0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];

// Offsets in the zero page / the image's first sectors (boot protocol).
const OFF_ACPI_RSDP: usize = 0x070;
const OFF_E820_ENTRIES: usize = 0x1E8;
const OFF_SETUP_SECTS: usize = 0x1F1;
const OFF_BOOT_FLAG: usize = 0x1FE;
const OFF_JUMP: usize = 0x200;
const OFF_HEADER: usize = 0x202;
const OFF_VERSION: usize = 0x206;
const OFF_TYPE_OF_LOADER: usize = 0x210;
const OFF_LOADFLAGS: usize = 0x211;
const OFF_RAMDISK_IMAGE: usize = 0x218;
const OFF_RAMDISK_SIZE: usize = 0x21C;
const OFF_CMD_LINE_PTR: usize = 0x228;
const OFF_INITRD_ADDR_MAX: usize = 0x22C;
const OFF_KERNEL_ALIGNMENT: usize = 0x230;
const OFF_RELOCATABLE: usize = 0x234;
const OFF_CMDLINE_SIZE: usize = 0x238;
const OFF_PREF_ADDRESS: usize = 0x258;
const OFF_INIT_SIZE: usize = 0x260;
const OFF_E820_TABLE: usize = 0x2D0;
const E820_MAX: usize = 128;
const LOADED_HIGH: u8 = 1 << 0;
const QUIET_FLAG: u8 = 1 << 5;

/// Why a guest cannot be booted.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Not a bzImage.
    #[error("{0}: not a Linux bzImage ({1})")]
    NotBzImage(String, &'static str),
    /// The boot protocol is too old.
    #[error("{0}: boot protocol {1:#x} is too old (2.06 or later is needed)")]
    OldProtocol(String, u16),
    /// It does not fit.
    #[error("{what} does not fit in the guest's {lowmem:#x} bytes of low memory ({detail})")]
    TooBig {
        /// What.
        what: &'static str,
        /// Low memory.
        lowmem: u64,
        /// The collision.
        detail: String,
    },
    /// A kernel built without CONFIG_RELOCATABLE cannot run where ACRN's layout puts it.
    #[error("{name}: the kernel is not relocatable: it must run at {pref:#x}, ACRN's layout puts it at {at:#x} (build it with CONFIG_RELOCATABLE)")]
    NotRelocatable {
        /// Kernel path.
        name: String,
        /// Where it would run.
        at: u64,
        /// Where it must run.
        pref: u64,
    },
    /// The command line is too long.
    #[error("the kernel command line is {len} bytes; at most {max} fit")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A write outside guest RAM (a layout bug).
    #[error(transparent)]
    Memory(#[from] OutOfRange),
}

/// The setup header fields the loader needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupHeader {
    /// Real-mode setup size in 512-byte sectors, excluding the boot sector (0 means 4).
    pub setup_sects: u8,
    /// Boot protocol version.
    pub version: u16,
    /// Bit 0: the protected-mode kernel is loaded at 1 MiB or above.
    pub loadflags: u8,
    /// Highest address the initrd may end at (+1).
    pub initrd_addr_max: u32,
    /// Alignment the relocatable kernel needs.
    pub kernel_alignment: u32,
    /// Whether the kernel is relocatable.
    pub relocatable: bool,
    /// Longest command line the kernel takes.
    pub cmdline_size: u32,
    /// Preferred load address of the kernel.
    pub pref_address: u64,
    /// Memory the kernel needs from its load address while decompressing.
    pub init_size: u32,
    /// End of the header in the image (0x202 + the jump's offset byte).
    pub header_end: usize,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn put_u32(b: &mut [u8], o: usize, v: u32) {
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

impl SetupHeader {
    /// Parses the header of a bzImage; `name` is for messages.
    pub fn parse(name: &str, image: &[u8]) -> Result<Self, BootError> {
        let not = |why| BootError::NotBzImage(name.to_string(), why);
        if image.len() < OFF_INIT_SIZE + 4 {
            return Err(not("too short for a setup header"));
        }
        if u16_at(image, OFF_BOOT_FLAG) != 0xAA55 {
            return Err(not("no 0xAA55 boot flag"));
        }
        if &image[OFF_HEADER..OFF_HEADER + 4] != b"HdrS" {
            return Err(not("no HdrS signature"));
        }
        let version = u16_at(image, OFF_VERSION);
        // cmdline_size and the 64-bit-clean header fields exist from 2.06; init_size from 2.10.
        if version < 0x020A {
            return Err(BootError::OldProtocol(name.to_string(), version));
        }
        let loadflags = image[OFF_LOADFLAGS];
        if loadflags & LOADED_HIGH == 0 {
            return Err(not("a zImage (loaded low) cannot be booted"));
        }
        let setup_sects = match image[OFF_SETUP_SECTS] {
            0 => 4,
            n => n,
        };
        let header_end = OFF_HEADER + image[OFF_JUMP + 1] as usize;
        let h = Self {
            setup_sects,
            version,
            loadflags,
            initrd_addr_max: u32_at(image, OFF_INITRD_ADDR_MAX),
            kernel_alignment: u32_at(image, OFF_KERNEL_ALIGNMENT),
            relocatable: image[OFF_RELOCATABLE] != 0,
            cmdline_size: u32_at(image, OFF_CMDLINE_SIZE),
            pref_address: u64::from_le_bytes(
                image[OFF_PREF_ADDRESS..OFF_PREF_ADDRESS + 8]
                    .try_into()
                    .expect("8 bytes"),
            ),
            init_size: u32_at(image, OFF_INIT_SIZE),
            header_end: header_end.min(0x290),
        };
        if h.setup_size() >= image.len() {
            return Err(not("the setup code is larger than the file"));
        }
        Ok(h)
    }

    /// Bytes of real-mode code before the protected-mode kernel.
    pub fn setup_size(&self) -> usize {
        (self.setup_sects as usize + 1) * 512
    }
}

/// One e820 entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Start.
    pub addr: u64,
    /// Length.
    pub size: u64,
    /// [`E820_RAM`] or [`E820_RESERVED`].
    pub kind: u32,
}

/// ACRN's User VM memory map for `lowmem` bytes below 2 GiB and `highmem` from 4 GiB.
pub fn e820_table(lowmem: u64, highmem: u64) -> Vec<E820Entry> {
    let mut t = vec![
        E820Entry {
            addr: 0,
            size: 0xA0000,
            kind: E820_RAM,
        },
        E820Entry {
            addr: 0x10_0000,
            size: lowmem - 0x10_0000,
            kind: E820_RAM,
        },
    ];
    if lowmem < LOWMEM_LIMIT {
        t.push(E820Entry {
            addr: lowmem,
            size: LOWMEM_LIMIT - lowmem,
            kind: E820_RESERVED,
        });
    }
    t.push(E820Entry {
        addr: PCI_ECAM_BASE,
        size: HIGHMEM_BASE - PCI_ECAM_BASE,
        kind: E820_RESERVED,
    });
    if highmem > 0 {
        t.push(E820Entry {
            addr: HIGHMEM_BASE,
            size: highmem,
            kind: E820_RAM,
        });
    }
    t
}

/// Where everything goes for one boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootLayout {
    /// The zero page.
    pub zero_page: u64,
    /// The command line.
    pub cmdline: u64,
    /// The ramdisk, if any.
    pub ramdisk: Option<(u64, u64)>,
    /// The GDT.
    pub gdt: u64,
    /// The kernel entry (32-bit protected-mode code).
    pub entry: u64,
}

/// Loads `kernel` (and `ramdisk`, `cmdline`) into `mem` with ACPI's RSDP at `rsdp`, and returns
/// the layout; the BSP registers come from [`boot_regs`].
pub fn load_linux(
    mem: &GuestMemory,
    kernel_name: &str,
    kernel: &[u8],
    ramdisk: Option<&[u8]>,
    cmdline: &str,
    rsdp: u64,
) -> Result<BootLayout, BootError> {
    let hdr = SetupHeader::parse(kernel_name, kernel)?;
    let lowmem = mem.lowmem();
    let too_big = |what, detail: String| BootError::TooBig {
        what,
        lowmem,
        detail,
    };
    // cmdline_size excludes the terminating NUL.
    if cmdline.len() > MAX_CMDLINE || cmdline.len() > hdr.cmdline_size as usize {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max: MAX_CMDLINE.min(hdr.cmdline_size as usize),
        });
    }
    let ramdisk_len = ramdisk.map_or(0, |r| r.len() as u64);
    let ramdisk_room = (ramdisk_len + 8 * 1024).next_multiple_of(4096);
    let ramdisk_at = lowmem
        .checked_sub(ramdisk_room)
        .ok_or_else(|| too_big("the ramdisk", format!("{ramdisk_len:#x} bytes")))?;
    let gdt = ramdisk_at - 2048;
    let entry = KERNEL_LOAD + hdr.setup_size() as u64;
    // A relocatable kernel decompresses at its load address aligned up to kernel_alignment
    // (never below its preferred address), and needs init_size bytes there.
    let align = u64::from(hdr.kernel_alignment.max(4096)).next_power_of_two();
    if !hdr.relocatable && entry != hdr.pref_address {
        return Err(BootError::NotRelocatable {
            name: kernel_name.to_string(),
            at: entry,
            pref: hdr.pref_address,
        });
    }
    let run_at = entry.next_multiple_of(align).max(hdr.pref_address);
    let kernel_end = (KERNEL_LOAD + kernel.len() as u64).max(run_at + u64::from(hdr.init_size));
    if kernel_end > gdt {
        return Err(too_big(
            "the kernel",
            format!("it needs up to {kernel_end:#x}, the ramdisk and boot data start at {gdt:#x}"),
        ));
    }
    if ramdisk.is_some() && ramdisk_at + ramdisk_len > u64::from(hdr.initrd_addr_max) + 1 {
        return Err(too_big(
            "the ramdisk",
            format!(
                "the kernel takes an initrd only below {:#x}",
                hdr.initrd_addr_max
            ),
        ));
    }

    mem.write(KERNEL_LOAD, kernel)?;
    if let Some(r) = ramdisk {
        mem.write(ramdisk_at, r)?;
    }
    let cmdline_at = lowmem - 8 * 1024;
    let mut cmd = cmdline.as_bytes().to_vec();
    cmd.push(0);
    mem.write(cmdline_at, &cmd)?;
    let gdt_bytes: Vec<u8> = BOOT_GDT.iter().flat_map(|d| d.to_le_bytes()).collect();
    mem.write(gdt, &gdt_bytes)?;

    let zp = zero_page(
        &hdr,
        kernel,
        ramdisk.map(|_| (ramdisk_at, ramdisk_len)),
        cmdline_at,
        &e820_table(lowmem, mem.highmem()),
        rsdp,
    );
    let zero_page_at = lowmem - 4096;
    mem.write(zero_page_at, &zp)?;
    Ok(BootLayout {
        zero_page: zero_page_at,
        cmdline: cmdline_at,
        ramdisk: ramdisk.map(|_| (ramdisk_at, ramdisk_len)),
        gdt,
        entry,
    })
}

/// The 4 KiB zero page: the image's setup header, loader fields, e820 and RSDP.
pub fn zero_page(
    hdr: &SetupHeader,
    kernel: &[u8],
    ramdisk: Option<(u64, u64)>,
    cmdline: u64,
    e820: &[E820Entry],
    rsdp: u64,
) -> Vec<u8> {
    let mut zp = vec![0u8; 4096];
    zp[OFF_SETUP_SECTS..hdr.header_end].copy_from_slice(&kernel[OFF_SETUP_SECTS..hdr.header_end]);
    zp[OFF_SETUP_SECTS] = hdr.setup_sects;
    // 0xFF: "undefined" boot loader, as ACRN; quiet as ACRN.
    zp[OFF_TYPE_OF_LOADER] = 0xFF;
    zp[OFF_LOADFLAGS] |= QUIET_FLAG;
    if let Some((at, len)) = ramdisk {
        put_u32(&mut zp, OFF_RAMDISK_IMAGE, at as u32);
        put_u32(&mut zp, OFF_RAMDISK_SIZE, len as u32);
    }
    put_u32(&mut zp, OFF_CMD_LINE_PTR, cmdline as u32);
    zp[OFF_ACPI_RSDP..OFF_ACPI_RSDP + 8].copy_from_slice(&rsdp.to_le_bytes());
    let n = e820.len().min(E820_MAX);
    zp[OFF_E820_ENTRIES] = n as u8;
    for (i, e) in e820.iter().take(n).enumerate() {
        let o = OFF_E820_TABLE + i * 20;
        zp[o..o + 8].copy_from_slice(&e.addr.to_le_bytes());
        zp[o + 8..o + 16].copy_from_slice(&e.size.to_le_bytes());
        put_u32(&mut zp, o + 16, e.kind);
    }
    zp
}

/// The BSP registers for a [`BootLayout`] (ACRN's bzImage contract).
pub fn boot_regs(layout: &BootLayout) -> AcrnVcpuRegs {
    let mut r = AcrnRegs {
        gdt: AcrnDescriptorPtr {
            limit: (BOOT_GDT.len() * 8 - 1) as u16,
            base: layout.gdt,
            reserved: [0; 3],
        },
        rip: layout.entry,
        // CR0.ET | CR0.NE | CR0.PE
        cr0: 0x31,
        cs_ar: 0xC09B,
        cs_limit: 0xFFFF_FFFF,
        cs_sel: 0x10,
        ds_sel: 0x18,
        ss_sel: 0x18,
        es_sel: 0x18,
        ..Default::default()
    };
    r.gprs.rsi = layout.zero_page;
    AcrnVcpuRegs {
        vcpu_id: 0,
        reserved: [0; 3],
        vcpu_regs: r,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic bzImage: boot sector + `setup_sects` of setup + `payload` bytes.
    pub(crate) fn fake_bzimage(setup_sects: u8, payload: usize, init_size: u32) -> Vec<u8> {
        let setup = (setup_sects.max(4) as usize + 1) * 512;
        let mut img = vec![0u8; setup + payload];
        img[OFF_SETUP_SECTS] = setup_sects;
        img[OFF_BOOT_FLAG..OFF_BOOT_FLAG + 2].copy_from_slice(&0xAA55u16.to_le_bytes());
        img[OFF_JUMP] = 0xEB;
        img[OFF_JUMP + 1] = 0x66; // header ends at 0x268
        img[OFF_HEADER..OFF_HEADER + 4].copy_from_slice(b"HdrS");
        img[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&0x020Fu16.to_le_bytes());
        img[OFF_LOADFLAGS] = LOADED_HIGH;
        put_u32(&mut img, OFF_INITRD_ADDR_MAX, 0x7FFF_FFFF);
        put_u32(&mut img, OFF_KERNEL_ALIGNMENT, 0x20_0000);
        img[OFF_RELOCATABLE] = 1;
        put_u32(&mut img, OFF_CMDLINE_SIZE, 2047);
        img[OFF_PREF_ADDRESS..OFF_PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        put_u32(&mut img, OFF_INIT_SIZE, init_size);
        for (i, b) in img[setup..].iter_mut().enumerate() {
            *b = i as u8;
        }
        img
    }

    #[test]
    fn header_parsing() {
        let img = fake_bzimage(0, 4096, 0x100_0000);
        let h = SetupHeader::parse("k", &img).unwrap();
        assert_eq!(h.setup_sects, 4, "0 means 4");
        assert_eq!(h.setup_size(), 5 * 512);
        assert_eq!(h.header_end, 0x268);
        assert_eq!(h.kernel_alignment, 0x20_0000);
        assert!(h.relocatable);

        let mut bad = img.clone();
        bad[OFF_HEADER] = b'X';
        assert!(SetupHeader::parse("k", &bad)
            .unwrap_err()
            .to_string()
            .contains("HdrS"));
        let mut old = img.clone();
        old[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&0x0204u16.to_le_bytes());
        assert!(matches!(
            SetupHeader::parse("k", &old),
            Err(BootError::OldProtocol(_, 0x204))
        ));
        let mut zimage = img.clone();
        zimage[OFF_LOADFLAGS] = 0;
        assert!(SetupHeader::parse("k", &zimage).is_err());
        assert!(SetupHeader::parse("k", &img[..0x100]).is_err());
        assert!(SetupHeader::parse("k", b"ELF").is_err());
    }

    #[test]
    fn e820_matches_acrn() {
        let t = e820_table(512 << 20, 0);
        assert_eq!(
            t,
            [
                E820Entry {
                    addr: 0,
                    size: 0xA0000,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0x10_0000,
                    size: (512 << 20) - 0x10_0000,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 512 << 20,
                    size: 0x8000_0000 - (512 << 20),
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0xE000_0000,
                    size: 0x2000_0000,
                    kind: E820_RESERVED
                },
            ]
        );
        let t = e820_table(2 << 30, 1 << 30);
        assert_eq!(t.len(), 4, "no hole entry when lowmem reaches 2 GiB");
        assert_eq!(
            t[3],
            E820Entry {
                addr: 1 << 32,
                size: 1 << 30,
                kind: E820_RAM
            }
        );
    }

    #[test]
    fn load_places_everything_as_acrn_does() {
        let mem = GuestMemory::heap(256 << 20);
        let img = fake_bzimage(27, 0x30_0000, 0x100_0000);
        let rd = vec![0x5Au8; 0x12345];
        let l = load_linux(&mem, "k", &img, Some(&rd), "console=ttyS0 quiet", 0xF2400).unwrap();
        let low = 256u64 << 20;
        let rd_room = (0x12345u64 + 8192).next_multiple_of(4096);
        assert_eq!(l.zero_page, low - 4096);
        assert_eq!(l.cmdline, low - 8192);
        assert_eq!(l.ramdisk, Some((low - rd_room, 0x12345)));
        assert_eq!(l.gdt, low - rd_room - 2048);
        assert_eq!(l.entry, KERNEL_LOAD + 28 * 512);

        // The image, ramdisk, command line and GDT are in guest memory.
        let mut k = vec![0; img.len()];
        mem.read(KERNEL_LOAD, &mut k).unwrap();
        assert_eq!(k, img);
        let mut r = vec![0; rd.len()];
        mem.read(l.ramdisk.unwrap().0, &mut r).unwrap();
        assert_eq!(r, rd);
        let mut c = vec![0; 20];
        mem.read(l.cmdline, &mut c).unwrap();
        assert_eq!(&c, b"console=ttyS0 quiet\0");
        assert_eq!(mem.read_u64(l.gdt + 16).unwrap(), 0x00CF_9B00_0000_FFFF);
        assert_eq!(mem.read_u64(l.gdt + 24).unwrap(), 0x00CF_9300_0000_FFFF);

        // The zero page's boot-protocol fields.
        let zp = l.zero_page;
        assert_eq!(
            mem.read_u32(zp + 0x202).unwrap(),
            u32::from_le_bytes(*b"HdrS")
        );
        let mut b = [0u8; 2];
        mem.read(zp + 0x210, &mut b).unwrap();
        assert_eq!(b[0], 0xFF, "type_of_loader");
        assert_eq!(b[1], LOADED_HIGH | QUIET_FLAG, "loadflags");
        assert_eq!(
            mem.read_u32(zp + 0x218).unwrap() as u64,
            l.ramdisk.unwrap().0
        );
        assert_eq!(mem.read_u32(zp + 0x21C).unwrap(), 0x12345);
        assert_eq!(mem.read_u32(zp + 0x228).unwrap() as u64, l.cmdline);
        assert_eq!(mem.read_u64(zp + 0x70).unwrap(), 0xF2400);
        let mut n = [0u8; 1];
        mem.read(zp + 0x1E8, &mut n).unwrap();
        assert_eq!(n[0], 4);
        // Second e820 entry: 1 MiB .. lowmem, RAM.
        let e = zp + 0x2D0 + 20;
        assert_eq!(mem.read_u64(e).unwrap(), 0x10_0000);
        assert_eq!(mem.read_u64(e + 8).unwrap(), low - 0x10_0000);
        assert_eq!(mem.read_u32(e + 16).unwrap(), E820_RAM);
        // Beyond the copied header the page is clean.
        assert_eq!(mem.read_u64(zp + 0x268).unwrap(), 0);

        let regs = boot_regs(&l);
        assert!(regs.reserved_fields_clear());
        let r = regs.vcpu_regs;
        assert_eq!((r.rip, r.gprs.rsi, r.cr0), (l.entry, zp, 0x31));
        assert_eq!((r.cs_sel, r.cs_ar, r.cs_limit), (0x10, 0xC09B, 0xFFFF_FFFF));
        assert_eq!((r.ds_sel, r.es_sel, r.ss_sel), (0x18, 0x18, 0x18));
        let (base, limit) = (r.gdt.base, r.gdt.limit);
        assert_eq!((base, limit), (l.gdt, 31));
        assert_eq!((r.cr4, r.ia32_efer), (0, 0), "32-bit entry, paging off");
    }

    #[test]
    fn oversize_inputs_are_refused_with_reasons() {
        let mem = GuestMemory::heap(128 << 20);
        // init_size reaching into the boot data.
        let img = fake_bzimage(27, 0x1000, 0x700_0000);
        let e = load_linux(&mem, "k", &img, None, "", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the kernel does not fit"), "{e}");
        let img = fake_bzimage(27, 0x1000, 0x100_0000);
        let e = load_linux(&mem, "k", &img, Some(&vec![0; 120 << 20]), "", 0).unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let e = load_linux(&mem, "k", &img, None, &"x".repeat(3000), 0).unwrap_err();
        assert!(matches!(e, BootError::CmdlineTooLong { len: 3000, .. }));
        let mut fixed = fake_bzimage(27, 0x1000, 0x100_0000);
        fixed[OFF_RELOCATABLE] = 0;
        let e = load_linux(&mem, "k", &fixed, None, "", 0).unwrap_err();
        assert!(e.to_string().contains("not relocatable"), "{e}");
        let e = load_linux(&mem, "k", b"not a kernel at all", None, "", 0).unwrap_err();
        assert!(e.to_string().contains("not a Linux bzImage"));
    }
}
