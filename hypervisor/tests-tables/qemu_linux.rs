// Hand-written test fixture (to be replaced by configurator output): QEMU q35, -cpu EPYC -smp 4
// -m 2G; VM0 runs Linux (KERNEL_BZIMAGE) on pCPUs 0-1 with 512 MiB, VM1 the small test guest.
use acrn_static_config::*;

pub const HV_RAM_START: u64 = 0x0100_0000;

pub static PLATFORM: PlatformConfig = PlatformConfig {
    board: BoardConfig {
        name: "qemu-q35-epyc-4c-2g",
        pcpus: &[
            Pcpu { id: 0, apic_id: 0, core_type: CoreType::Unknown },
            Pcpu { id: 1, apic_id: 1, core_type: CoreType::Unknown },
            Pcpu { id: 2, apic_id: 2, core_type: CoreType::Unknown },
            Pcpu { id: 3, apic_id: 3, core_type: CoreType::Unknown },
        ],
        ram: &[
            MemRange { start: 0, size: 0x9_fc00 },
            MemRange { start: 0x10_0000, size: 0x7fed_f000 },
        ],
        serial: Some(SerialPort::Pio { base: 0x3f8, irq: 4 }),
        ioapics: &[Ioapic { id: 0, address: 0xfec0_0000, gsi_base: 0, gsi_count: 24 }],
        mmcfg: Some(Mmcfg { base: 0xb000_0000, start_bus: 0, end_bus: 255 }),
        physical_address_bits: 40,
    },
    hv: HvConfig {
        ram: MemRange { start: HV_RAM_START, size: 0x0200_0000 },
        stack_size: 0x1_0000,
        release: false,
        scheduler: Scheduler::Noop,
        console_loglevel: 3,
        max_vm_num: 2,
        ivshmem_regions: &[],
        vuart_rx_buf_size: 256,
        vuart_tx_buf_size: 256,
    },
    vms: &[
        VmConfig {
            id: 0,
            name: "LINUX",
            load_order: LoadOrder::PreLaunched,
            vm_type: VmType::Standard,
            guest_flags: GuestFlags(GuestFlags::STATIC_VM),
            pcpus: PcpuSet(0b0011),
            memory: &[GuestMemRegion { gpa: 0, hpa: 0x4000_0000, size: 0x2000_0000 }],
            memory_size: 0x2000_0000,
            os: Some(OsConfig {
                kern_type: KernelType::BzImage,
                kern_mod: "Linux_bzImage",
                ramdisk_mod: None,
                bootargs: "console=ttyS0 earlyprintk=serial,ttyS0 nokaslr panic=0",
                kern_load_addr: None,
                kern_entry_addr: None,
            }),
            console: ConsoleVuart::Legacy { port: 0x3f8, irq: 4 },
            vuarts: &[],
            ivshmem: &[],
            pci_devs: &[],
            pt_intx: &[],
            priority: Priority::Low,
            companion_vm: None,
        },
        VmConfig {
            id: 1,
            name: "PRE_VM1",
            load_order: LoadOrder::PreLaunched,
            vm_type: VmType::Standard,
            guest_flags: GuestFlags(GuestFlags::STATIC_VM),
            pcpus: PcpuSet(0b1100),
            memory: &[GuestMemRegion { gpa: 0, hpa: 0x2000_0000, size: 0x1000_0000 }],
            memory_size: 0x1000_0000,
            os: Some(OsConfig {
                kern_type: KernelType::Elf,
                kern_mod: "PRE_VM1_kernel",
                ramdisk_mod: None,
                bootargs: "vm1 test args",
                kern_load_addr: None,
                kern_entry_addr: None,
            }),
            console: ConsoleVuart::Legacy { port: 0x3f8, irq: 4 },
            vuarts: &[],
            ivshmem: &[],
            pci_devs: &[],
            pt_intx: &[],
            priority: Priority::Low,
            companion_vm: None,
        },
    ],
};
