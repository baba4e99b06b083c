//! The shape of the static tables that `acrn-configurator` generates from a board and a scenario
//! and that the hypervisor compiles in. This crate is the contract between the two: the
//! configurator's templates emit Rust source that builds values of these types, the hypervisor
//! reads them. Only plain data lives here; no behaviour beyond small accessors.
#![no_std]

/// The whole configuration compiled into one hypervisor image.
#[derive(Debug)]
pub struct PlatformConfig {
    pub board: BoardConfig,
    pub hv: HvConfig,
    pub vms: &'static [VmConfig],
}

/// What the configurator learned about the machine from the board file.
#[derive(Debug)]
pub struct BoardConfig {
    /// The `board` attribute of the board file.
    pub name: &'static str,
    /// Physical CPUs the board names, ordered by logical CPU id (pCPU id = index).
    pub pcpus: &'static [Pcpu],
    /// System RAM ranges of the board (from its `<memory>` section), sorted, non-overlapping.
    pub ram: &'static [MemRange],
    /// The hypervisor's console UART, if the scenario chose one.
    pub serial: Option<SerialPort>,
    pub ioapics: &'static [Ioapic],
    /// PCI enhanced configuration access window, if the board reports one.
    pub mmcfg: Option<Mmcfg>,
    /// The PCI host bridge of bus 0 as the board's firmware describes it, if the board does.
    pub pci_root: Option<PciRootBridge>,
    /// Maximum physical address width of the CPUs.
    pub physical_address_bits: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pcpu {
    /// Logical CPU number as the board reports it (`cpu_id`).
    pub id: u16,
    pub apic_id: u32,
    pub core_type: CoreType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreType {
    Unknown,
    Core,
    Atom,
}

/// A half-open physical range `[start, start + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemRange {
    pub start: u64,
    pub size: u64,
}

impl MemRange {
    pub const fn end(&self) -> u64 {
        self.start + self.size
    }
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr - self.start < self.size
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialPort {
    /// A 16550 at an I/O port base.
    Pio { base: u16, irq: u8 },
    /// A memory-mapped 16550 with registers `reg_width` bytes apart.
    Mmio { base: u64, reg_width: u8, irq: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ioapic {
    pub id: u8,
    pub address: u64,
    pub gsi_base: u32,
    pub gsi_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mmcfg {
    pub base: u64,
    pub start_bus: u8,
    pub end_bus: u8,
}

/// A PCI host bridge: the buses and memory windows it decodes and where the INTx pins of the
/// devices on its root bus arrive (its ACPI `_PRT`, resolved to GSIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRootBridge {
    pub first_bus: u8,
    pub last_bus: u8,
    /// Memory windows, each `(first, last)` inclusive, in address order.
    pub mmio: &'static [(u64, u64)],
    pub intx_routes: &'static [IntxRoute],
}

/// INTx pin `pin` (0 = INTA# .. 3 = INTD#) of every function of device `device` on the root
/// bus arrives on `gsi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntxRoute {
    pub device: u8,
    pub pin: u8,
    pub gsi: u32,
}

/// Settings of the `<hv>` section the hypervisor acts on.
#[derive(Debug)]
pub struct HvConfig {
    /// Where the hypervisor's own RAM lives (the allocator's `HV_RAM_START`/`HV_RAM_SIZE`).
    pub ram: MemRange,
    pub stack_size: u64,
    pub release: bool,
    pub scheduler: Scheduler,
    /// Log level of the physical console (0..=5).
    pub console_loglevel: u8,
    pub max_vm_num: u16,
    pub ivshmem_regions: &'static [IvshmemRegion],
    pub vuart_rx_buf_size: u32,
    pub vuart_tx_buf_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    Noop,
    Iorr,
    Bvt,
    Prio,
}

/// A shared-memory region provided by the hypervisor and mapped into several VMs.
#[derive(Debug)]
pub struct IvshmemRegion {
    pub name: &'static str,
    /// Host physical placement chosen by the allocator.
    pub hpa: MemRange,
    pub region_id: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOrder {
    PreLaunched,
    Service,
    PostLaunched,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmType {
    Standard,
    RealTime,
    Tee,
    Ree,
}

/// Guest flags, bit-compatible with ACRN's `GUEST_FLAG_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFlags(pub u64);

impl GuestFlags {
    pub const SECURE_WORLD_ENABLED: u64 = 1 << 0;
    pub const LAPIC_PASSTHROUGH: u64 = 1 << 1;
    pub const IO_COMPLETION_POLLING: u64 = 1 << 2;
    pub const HIDE_MTRR: u64 = 1 << 3;
    pub const RT: u64 = 1 << 4;
    pub const NVMX_ENABLED: u64 = 1 << 5;
    pub const SECURITY_VM: u64 = 1 << 6;
    pub const VCAT_ENABLED: u64 = 1 << 7;
    pub const STATIC_VM: u64 = 1 << 8;
    pub const TEE: u64 = 1 << 9;
    pub const REE: u64 = 1 << 10;
    pub const PMU_PASSTHROUGH: u64 = 1 << 11;
    pub const VHWP: u64 = 1 << 12;
    pub const VTM: u64 = 1 << 13;
    pub const STATELESS: u64 = 1 << 14;

    pub const fn has(self, flag: u64) -> bool {
        self.0 & flag != 0
    }
}

/// A set of physical CPUs by pCPU id (bit n = pCPU n).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcpuSet(pub u64);

impl PcpuSet {
    pub const fn contains(self, pcpu: u16) -> bool {
        pcpu < 64 && self.0 & (1 << pcpu) != 0
    }
    pub const fn count(self) -> u32 {
        self.0.count_ones()
    }
    /// The lowest pCPU of the set: the one that runs the VM's bootstrap vCPU.
    pub const fn first(self) -> Option<u16> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as u16)
        }
    }
}

/// One VM of the scenario, ordered by `id` in [`PlatformConfig::vms`].
#[derive(Debug)]
pub struct VmConfig {
    pub id: u16,
    pub name: &'static str,
    pub load_order: LoadOrder,
    pub vm_type: VmType,
    pub guest_flags: GuestFlags,
    /// pCPUs the VM's vCPUs are pinned to, vCPU n on the n-th lowest pCPU. For the Service VM
    /// this is every pCPU no pre-launched VM owns.
    pub pcpus: PcpuSet,
    /// Host memory of a pre-launched VM, in guest-physical order starting at GPA 0 (with the
    /// usual hole below 1 MiB left to the VM). Empty for the Service VM (it gets what nobody else
    /// owns) and post-launched VMs (mapped by hypercall).
    pub memory: &'static [GuestMemRegion],
    /// Memory size the scenario asks for, in bytes (pre- and post-launched VMs).
    pub memory_size: u64,
    pub os: Option<OsConfig>,
    pub console: ConsoleVuart,
    /// VM-to-VM vUART connections of this VM.
    pub vuarts: &'static [VuartLink],
    pub ivshmem: &'static [IvshmemDevice],
    pub pci_devs: &'static [PassthroughDevice],
    /// (physical GSI, virtual GSI) pairs of pass-through INTx lines.
    pub pt_intx: &'static [(u32, u32)],
    /// Scheduling priority under `SCHED_PRIO`.
    pub priority: Priority,
    /// Share and wake-up boost of the VM's vCPUs under `SCHED_BVT`.
    pub bvt: BvtParams,
    pub companion_vm: Option<u16>,
}

impl VmConfig {
    /// Total host memory of a pre-launched VM.
    pub fn host_memory(&self) -> u64 {
        self.memory.iter().map(|r| r.size).sum()
    }
}

/// Guest-physical `[gpa, gpa + size)` backed by host-physical `[hpa, hpa + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMemRegion {
    pub gpa: u64,
    pub hpa: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Low,
    High,
}

/// The scenario's `bvt_*` settings of a VM, in ACRN's units: `weight` 1..=128 is the VM's
/// relative CPU share; a waking vCPU may run `warp_value` virtual-time units (see the BVT
/// scheduler) ahead of its fair place for at most `warp_limit` MCUs (1 ms each) of execution,
/// then not warp again for `unwarp_period` MCUs. `warp_value <= 0` disables warping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BvtParams {
    pub weight: u8,
    pub warp_value: i16,
    pub warp_limit: u8,
    pub unwarp_period: u8,
}

impl BvtParams {
    /// ACRN's defaults: weight 1, no warp.
    pub const DEFAULT: BvtParams = BvtParams {
        weight: 1,
        warp_value: 0,
        warp_limit: 0,
        unwarp_period: 0,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelType {
    BzImage,
    RawImage,
    Elf,
}

#[derive(Debug)]
pub struct OsConfig {
    pub kern_type: KernelType,
    /// Boot module tag of the kernel (the `kern_mod` of the scenario).
    pub kern_mod: &'static str,
    pub ramdisk_mod: Option<&'static str>,
    pub bootargs: &'static str,
    pub kern_load_addr: Option<u64>,
    pub kern_entry_addr: Option<u64>,
}

/// The VM's console: a 16550 the guest programs at a legacy COM port, ACRN's PCI vUART, or
/// none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleVuart {
    None,
    Legacy {
        port: u16,
        irq: u8,
    },
    /// ACRN's PCI vUART at `vbdf`, BAR0 (registers) and BAR1 (MSI-X table) as allocated.
    Pci {
        vbdf: Bdf,
        bar0: u64,
        bar1: u64,
    },
}

/// One end of a `vuart_connection`, seen from the VM that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VuartLink {
    pub kind: VuartKind,
    /// VM id of the other end.
    pub peer_vm: u16,
    /// Index of the peer's end in the peer's [`VmConfig::vuarts`].
    pub peer_index: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VuartKind {
    Legacy { port: u16, irq: u8 },
    Pci { vbdf: Bdf, bar0: u64, bar1: u64 },
}

/// A PCI bus/device/function triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Bdf {
    pub const fn new(bus: u8, dev: u8, func: u8) -> Self {
        Bdf { bus, dev, func }
    }
    /// The 16-bit encoding `bus << 8 | dev << 3 | func`.
    pub const fn raw(self) -> u16 {
        (self.bus as u16) << 8 | (self.dev as u16) << 3 | self.func as u16
    }
    /// From the 16-bit encoding (as in ACRN's hypercall structures).
    pub const fn from_raw(raw: u16) -> Self {
        Bdf {
            bus: (raw >> 8) as u8,
            dev: (raw >> 3) as u8 & 0x1F,
            func: raw as u8 & 7,
        }
    }
}

/// An IVSHMEM (1af4:1110) device a VM sees for one of [`HvConfig::ivshmem_regions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemDevice {
    pub region: u16,
    pub vbdf: Bdf,
    /// Guest-physical BAR0 (registers), BAR1 (MSI-X) and BAR2 (shared memory).
    pub bars: [u64; 3],
}

/// A physical PCI function passed through to the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassthroughDevice {
    pub pbdf: Bdf,
    pub vbdf: Bdf,
    /// Guest-physical BAR bases (0 = BAR unused).
    pub vbars: [u64; 6],
}

/// The console line (after the `[hv] ` prefix) the hypervisor prints when every VM has stopped
/// and it switches the machine off: tools that boot an image tell a finished run by it.
pub const POWER_OFF_LINE: &str = "every VM has stopped; powering off";

/// The hypervisor shell's prompt (ACRN's). The shell prints it alone on a line once it takes
/// input, and before each command it runs: tools that type into the shell wait for it.
pub const SHELL_PROMPT: &str = "ACRN:\\>";
