//! The scenario schema as data: every element of `<hv>` and `<vm>` with its value type, how
//! often it may occur, which load orders it applies to, and ACRN's default (reference
//! acrn-config.md §3.2, §3.3, §4.2, §4.3). Structure validation, default population and the
//! XML/TOML readers are all driven by this one table, so they cannot disagree.

use super::model::*;

/// Bit set of load orders an element applies to (`acrn:applicable-vms`).
pub type Applies = u8;
pub const PRE: Applies = 1;
pub const SVC: Applies = 2;
pub const POST: Applies = 4;
pub const ALL: Applies = PRE | SVC | POST;

pub fn load_order_bit(lo: LoadOrder) -> Applies {
    match lo {
        LoadOrder::PreLaunched => PRE,
        LoadOrder::Service => SVC,
        LoadOrder::PostLaunched => POST,
    }
}

pub fn applies_text(a: Applies) -> String {
    let mut v = Vec::new();
    if a & PRE != 0 {
        v.push("PRE_LAUNCHED_VM");
    }
    if a & SVC != 0 {
        v.push("SERVICE_VM");
    }
    if a & POST != 0 {
        v.push("POST_LAUNCHED_VM");
    }
    v.join(", ")
}

/// The type of a text value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Any text (kept, may be empty).
    Str,
    /// `y` or `n`.
    Bool,
    /// A decimal integer within an inclusive range.
    Int { min: i64, max: i64 },
    /// `0[Xx][0-9A-Fa-f]+|0`.
    Hex,
    /// Empty (absent) or Hex.
    HexOrEmpty,
    /// One of these spellings.
    Enum(&'static [&'static str]),
    /// `[a-zA-Z0-9_\-]{1,15}`.
    VmName,
    /// `[0-9A-Fa-f]{1,2}:[0-1][0-9A-Fa-f]\.[0-7]`.
    Vbdf,
    /// `(.*ttyS[\d]+)|None`.
    SerialConsole,
    /// `\w{1,27}`.
    IvshmemName,
    /// `[a-zA-Z0-9_\-]+`.
    InterfaceName,
    /// IVSHMEM size in MB: 2, 4, 8, ..., 512.
    PowerOfTwo { min: i64, max: i64 },
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Leaf(Ty),
    Group(&'static [Spec]),
}

/// One element of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub kind: Kind,
    pub min: u32,
    pub max: u32,
    /// Meaningful below `<vm>` only.
    pub applies: Applies,
    /// ACRN's default; an element with a default is never "missing".
    pub default: Option<&'static str>,
}

const UNBOUNDED: u32 = u32::MAX;

const fn leaf(name: &'static str, ty: Ty) -> Spec {
    Spec {
        name,
        kind: Kind::Leaf(ty),
        min: 0,
        max: 1,
        applies: ALL,
        default: None,
    }
}

const fn group(name: &'static str, children: &'static [Spec]) -> Spec {
    Spec {
        name,
        kind: Kind::Group(children),
        min: 0,
        max: 1,
        applies: ALL,
        default: None,
    }
}

impl Spec {
    const fn req(mut self) -> Self {
        self.min = 1;
        self
    }
    const fn many(mut self) -> Self {
        self.max = UNBOUNDED;
        self
    }
    const fn exactly(mut self, n: u32) -> Self {
        self.min = n;
        self.max = n;
        self
    }
    const fn def(mut self, d: &'static str) -> Self {
        self.min = 1;
        self.default = Some(d);
        self
    }
    const fn only(mut self, a: Applies) -> Self {
        self.applies = a;
        self
    }

    pub fn repeats(&self) -> bool {
        self.max > 1
    }

    pub fn children(&self) -> &'static [Spec] {
        match self.kind {
            Kind::Group(c) => c,
            Kind::Leaf(_) => &[],
        }
    }

    /// True if default population can create this element when it is missing.
    pub fn can_populate(&self) -> bool {
        match self.kind {
            Kind::Leaf(_) => self.default.is_some(),
            Kind::Group(children) => children
                .iter()
                .all(|c| c.min == 0 || c.can_populate() || c.unique_default()),
        }
    }

    /// Elements whose default is "the smallest value not used yet by this VM" (§3.5).
    pub fn unique_default(&self) -> bool {
        matches!(self.name, "VBDF" | "io_port" | "vbdf")
    }

    /// Required and not creatable by default population.
    pub fn required(&self) -> bool {
        self.min > 0 && !self.can_populate() && !self.unique_default()
    }
}

const B: Ty = Ty::Bool;
const STR: Ty = Ty::Str;
const fn int(min: i64, max: i64) -> Ty {
    Ty::Int { min, max }
}
const NAT: Ty = int(0, u32::MAX as i64);
const LOGLEVEL: Ty = int(0, 5);

const RDT: &[Spec] = &[
    leaf("RDT_ENABLED", B).def("n"),
    leaf("CDP_ENABLED", B).def("n"),
    leaf("VCAT_ENABLED", B).def("n"),
];

const IVSHMEM_VM: &[Spec] = &[
    leaf("VM_NAME", Ty::VmName).req(),
    leaf("VBDF", Ty::Vbdf).req(),
];
const IVSHMEM_VMS: &[Spec] = &[group("IVSHMEM_VM", IVSHMEM_VM).req().many()];
const IVSHMEM_REGION: &[Spec] = &[
    leaf("NAME", Ty::IvshmemName).req(),
    leaf("PROVIDED_BY", Ty::Enum(ProvidedBy::NAMES)).def("Hypervisor"),
    leaf("IVSHMEM_SIZE", Ty::PowerOfTwo { min: 2, max: 512 }).def("2"),
    leaf("IVSHMEM_REGION_ID", STR).def("0"),
    group("IVSHMEM_VMS", IVSHMEM_VMS).req(),
];
const IVSHMEM: &[Spec] = &[group("IVSHMEM_REGION", IVSHMEM_REGION).many()];
const SSRAM: &[Spec] = &[leaf("SSRAM_ENABLED", B).def("n")];

const FEATURES: &[Spec] = &[
    leaf("RELOC_ENABLED", B).def("y"),
    leaf("SCHEDULER", Ty::Enum(Scheduler::NAMES)).def("SCHED_BVT"),
    leaf("MULTIBOOT2_ENABLED", B).def("y"),
    leaf("SERVICE_VM_SUPERVISOR_ENABLED", B).def("n"),
    leaf("SPLIT_LOCK_DETECTION_ENABLED", B).def("n"),
    leaf("UC_LOCK_DETECTION_ENABLED", B).def("n"),
    leaf("SECURITY_VM_FIXUP", B).def("n"),
    leaf("KEEP_IRQ_DISABLED", B).def("n"),
    leaf("HYPERV_ENABLED", B).def("y"),
    leaf("IOMMU_ENFORCE_SNP", B).def("n"),
    leaf("ACPI_PARSE_ENABLED", B).def("y"),
    leaf("L1D_VMENTRY_ENABLED", B).def("n"),
    leaf("MCE_ON_PSC_ENABLED", B).def("y"),
    leaf("VUART_RX_BUF_SIZE", int(256, 2560)).def("256"),
    leaf("VUART_TX_BUF_SIZE", int(8192, 81920)).def("8192"),
    leaf("VUART_TIMER_PCPU", NAT).def("0"),
    group("RDT", RDT).req(),
    group("IVSHMEM", IVSHMEM).req(),
    group("SSRAM", SSRAM),
    leaf(
        "CPU_PERFORMANCE_POLICY",
        Ty::Enum(CpuPerformancePolicy::NAMES),
    )
    .def("Performance"),
];

const ENDPOINT: &[Spec] = &[
    leaf("vm_name", Ty::VmName).req(),
    leaf("io_port", Ty::Hex).req(),
    leaf("vbdf", Ty::Vbdf).req(),
];
const VUART_CONNECTION: &[Spec] = &[
    leaf("name", STR).req(),
    leaf("type", Ty::Enum(VuartType::NAMES)).def("pci"),
    group("endpoint", ENDPOINT).exactly(2),
];
const VUART_CONNECTIONS: &[Spec] = &[group("vuart_connection", VUART_CONNECTION).many()];

const DEBUG_OPTIONS: &[Spec] = &[
    leaf("SERIAL_CONSOLE", Ty::SerialConsole).def("None"),
    leaf("MEM_LOGLEVEL", LOGLEVEL).def("5"),
    leaf("NPK_LOGLEVEL", LOGLEVEL).def("5"),
    leaf("CONSOLE_LOGLEVEL", LOGLEVEL).def("5"),
    leaf("CONSOLE_VM", NAT).def("65535"),
];
const HV_MEMORY: &[Spec] = &[
    leaf("STACK_SIZE", Ty::Hex).def("0x2000"),
    leaf("HV_RAM_START", Ty::Hex),
];
const CAPACITIES: &[Spec] = &[
    leaf("MAX_VM_NUM", NAT).def("16"),
    leaf("MAX_IOAPIC_NUM", int(1, 10)),
    leaf("MAX_PCI_BUS_NUM", NAT).def("0"),
    leaf("MAX_PCI_DEV_NUM", int(1, 1024)).def("96"),
    leaf("MAX_IOAPIC_LINES", int(1, 120)),
    leaf("MAX_PT_IRQ_ENTRIES", int(1, 1024)).def("256"),
    leaf("MAX_MSIX_TABLE_NUM", int(1, 2048)).def("64"),
    leaf("MAX_EMULATED_MMIO", int(1, 128)).def("16"),
];
const MISC_CFG: &[Spec] = &[leaf("GPU_SBDF", Ty::Hex).def("0x00000010")];
const HIDDEN_PDEV_REGION: &[Spec] = &[leaf("HIDDEN_PDEV", Ty::Vbdf).many()];
const POLICY: &[Spec] = &[
    leaf("VM", STR).req(),
    leaf("VCPU", NAT).req(),
    leaf("TYPE", Ty::Enum(CacheType::NAMES)).def("Unified"),
    leaf("CLOS_MASK", Ty::Hex).req(),
];
const CACHE_ALLOCATION: &[Spec] = &[
    leaf("CACHE_ID", Ty::Hex).req(),
    leaf("CACHE_LEVEL", NAT).req(),
    group("POLICY", POLICY).req().many(),
];
const CACHE_REGION: &[Spec] = &[group("CACHE_ALLOCATION", CACHE_ALLOCATION).req().many()];

/// Children of `<hv>`.
pub const HV: &[Spec] = &[
    leaf("BUILD_TYPE", Ty::Enum(BuildType::NAMES)).def("debug"),
    group("FEATURES", FEATURES).req(),
    group("vuart_connections", VUART_CONNECTIONS),
    group("DEBUG_OPTIONS", DEBUG_OPTIONS).req(),
    group("MEMORY", HV_MEMORY).req(),
    group("CAPACITIES", CAPACITIES).req(),
    group("MISC_CFG", MISC_CFG).req(),
    group("HIDDEN_PDEV_REGION", HIDDEN_PDEV_REGION),
    group("CACHE_REGION", CACHE_REGION),
];

/// The schema default of `memory/size` (MB).
pub const DEFAULT_MEMORY_MB: u64 = 1024;
pub(crate) const DEFAULT_MEMORY_MB_TEXT: &str = "1024";

const VM_MEMORY: &[Spec] = &[
    leaf("size", int(0, i64::MAX)).def(DEFAULT_MEMORY_MB_TEXT),
    group(
        "hpa_region",
        &[
            leaf("start_hpa", Ty::Hex).req(),
            leaf("size_hpa", int(0, i64::MAX)).req(),
        ],
    )
    .many()
    .only(PRE),
];
const PCPU: &[Spec] = &[
    leaf("pcpu_id", NAT).req(),
    leaf("real_time_vcpu", B).def("n"),
];
const OS_CONFIG: &[Spec] = &[
    leaf("kern_type", Ty::Enum(KernType::NAMES)).def("KERNEL_BZIMAGE"),
    leaf("kern_mod", STR).def("Linux_bzImage"),
    leaf("ramdisk_mod", STR),
    leaf("bootargs", STR),
    leaf("kern_load_addr", Ty::HexOrEmpty),
    leaf("kern_entry_addr", Ty::HexOrEmpty),
];
const DISPLAY: &[Spec] = &[
    leaf("monitor_id", NAT),
    leaf("window_resolutions", STR),
    leaf("horizontal_offset", NAT),
    leaf("vertical_offset", NAT),
];
const GPU: &[Spec] = &[
    leaf("display_type", Ty::Enum(DisplayType::NAMES)),
    group("displays", &[group("display", DISPLAY).many()]),
];
const CONSOLE: &[Spec] = &[
    leaf("use_type", Ty::Enum(ConsoleUseType::NAMES)).def("Virtio console"),
    leaf("backend_type", Ty::Enum(ConsoleBackend::NAMES)).def("stdio"),
    leaf("output_file_path", STR),
    leaf("sock_file_path", STR),
    leaf("tty_device_path", STR),
];
const NETWORK: &[Spec] = &[
    leaf("virtio_framework", Ty::Enum(VirtioFramework::NAMES)).def("User space based (VBSU)"),
    leaf("interface_name", Ty::InterfaceName),
];
const INPUT: &[Spec] = &[leaf("backend_device_file", STR), leaf("id", STR)];
const VIRTIO_DEVICES: &[Spec] = &[
    group("gpu", GPU),
    group("console", CONSOLE).many(),
    group("network", NETWORK).many(),
    group("input", INPUT).many(),
    leaf("block", STR).many(),
    leaf("vsock", int(3, 4_294_967_294)).many(),
];

/// Children of `<vm>`; `applies` is the "applies to" column of §3.3.
pub const VM: &[Spec] = &[
    leaf("load_order", Ty::Enum(LoadOrder::NAMES)).req(),
    leaf("name", Ty::VmName).req(),
    leaf("vm_type", Ty::Enum(VmType::NAMES)).def("STANDARD_VM"),
    leaf("console_vuart", Ty::Enum(ConsoleVuart::NAMES)).def("None"),
    leaf("os_type", Ty::Enum(OsType::NAMES))
        .def("Non-Windows OS")
        .only(POST),
    leaf("vuart0", B).def("n").only(POST),
    leaf("vbootloader", B).def("y").only(POST),
    // minOccurs="0" in ACRN's VMConfigType: default population does not add a missing
    // <memory> (§3.5), so checks such as C44 see what ACRN sees; consumers that need a size
    // use `Vm::memory_size_mb`.
    group("memory", VM_MEMORY).only(PRE | POST),
    leaf("own_pcpu", B).def("n"),
    group("cpu_affinity", &[group("pcpu", PCPU).many()]).only(PRE | POST),
    group("usb_xhci", &[leaf("usb_dev", STR).many()]).only(POST),
    leaf("lapic_passthrough", B).def("n"),
    leaf("io_completion_polling", B).def("n").only(PRE | POST),
    leaf("nested_virtualization_support", B).def("n").only(SVC),
    leaf("virtual_cat_support", B).def("n").only(PRE | POST),
    leaf("virtual_cat_number", NAT).def("0").only(PRE | POST),
    leaf("virtual_thermal_monitor", B).def("n"),
    leaf("secure_world_support", B).def("n").only(POST),
    leaf("hide_mtrr_support", B).def("n"),
    leaf("security_vm", B).def("n"),
    leaf("stateless", B).def("n").only(PRE),
    group(
        "epc_section",
        &[
            leaf("base", Ty::Hex).def("0"),
            leaf("size", Ty::Hex).def("0"),
        ],
    )
    .req()
    .only(PRE),
    leaf("priority", Ty::Enum(Priority::NAMES)).def("PRIO_LOW"),
    leaf("bvt_weight", int(1, 128)).def("1"),
    leaf("bvt_warp_value", int(-8192, 8192)).def("0"),
    leaf("bvt_warp_limit", int(0, 10)).def("0"),
    leaf("bvt_unwarp_period", int(0, 10)).def("0"),
    leaf("companion_vmid", NAT).def("65535"),
    group("os_config", OS_CONFIG).req().only(PRE | SVC),
    group("mmio_resources", &[leaf("TPM2", B), leaf("p2sb", B)]).only(PRE),
    leaf("pt_intx", STR).only(PRE),
    group("pci_devs", &[leaf("pci_dev", STR).many()]).only(PRE | POST),
    leaf("PTM", B).def("y").only(PRE | POST),
    leaf("customized_parameters", STR),
    group("virtio_devices", VIRTIO_DEVICES).req().only(POST),
];

/// Every element name the schema knows, with its parent's name (for "did you mean" hints
/// and "this element belongs under X").
pub fn all_names() -> Vec<(&'static str, &'static str)> {
    fn walk(
        parent: &'static str,
        specs: &'static [Spec],
        out: &mut Vec<(&'static str, &'static str)>,
    ) {
        for s in specs {
            out.push((s.name, parent));
            walk(s.name, s.children(), out);
        }
    }
    let mut out = vec![("hv", "acrn-config"), ("vm", "acrn-config")];
    walk("hv", HV, &mut out);
    walk("vm", VM, &mut out);
    out
}

/// Levenshtein distance, for suggesting the closest known name.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(cb));
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `candidates` to `name`, if close enough to be a plausible typo.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(closest("nmae", ["name", "vm_type"]), Some("name"));
        assert_eq!(
            closest("cpu_afinity", VM.iter().map(|s| s.name)),
            Some("cpu_affinity")
        );
        assert_eq!(closest("zzzzzzzz", ["name"]), None);
    }

    #[test]
    fn required_elements() {
        let by = |n: &str| VM.iter().find(|s| s.name == n).copied().unwrap();
        assert!(by("name").required());
        assert!(!by("vm_type").required());
        assert!(
            !by("os_config").required(),
            "os_config is populated from defaults"
        );
        assert!(!by("virtio_devices").required());
    }
}
