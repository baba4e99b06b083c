//! The typed scenario model: one struct per element of `<hv>` and `<vm>` (reference
//! acrn-config.md §3.2/§3.3). Field names serialize to ACRN's element names, so the TOML and
//! JSON forms use the same names as the XML.
//!
//! `Option` means "absent from the file". After [`super::populate_defaults`] every element
//! that has an ACRN default and applies to the VM's load order is `Some`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::spans::SpanTable;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        pub enum $name { $(#[serde(rename = $s)] $var),+ }
        impl $name {
            /// The spellings accepted in a file, in schema order.
            pub const NAMES: &'static [&'static str] = &[$($s),+];
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$var => $s),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($s => Ok(Self::$var),)+ _ => Err(()) }
            }
        }
    };
}

str_enum!(BuildType { Release = "release", Debug = "debug" });
str_enum!(Scheduler {
    Noop = "SCHED_NOOP",
    Iorr = "SCHED_IORR",
    Bvt = "SCHED_BVT",
    Prio = "SCHED_PRIO",
});
str_enum!(CpuPerformancePolicy { Performance = "Performance", Nominal = "Nominal" });
str_enum!(ProvidedBy { Hypervisor = "Hypervisor", DeviceModel = "Device Model" });
str_enum!(VuartType { Legacy = "legacy", Pci = "pci" });
str_enum!(CacheType { Unified = "Unified", Code = "Code", Data = "Data" });
str_enum!(
    /// Which of ACRN's three VM kinds a `<vm>` is; decides which elements apply (§4.3).
    LoadOrder {
        PreLaunched = "PRE_LAUNCHED_VM",
        Service = "SERVICE_VM",
        PostLaunched = "POST_LAUNCHED_VM",
    }
);
str_enum!(VmType { Rtvm = "RTVM", Standard = "STANDARD_VM", Tee = "TEE_VM", Ree = "REE_VM" });
str_enum!(ConsoleVuart {
    None = "None",
    Com1 = "COM Port 1",
    Com2 = "COM Port 2",
    Com3 = "COM Port 3",
    Com4 = "COM Port 4",
    Pci = "PCI",
});
str_enum!(OsType { NonWindows = "Non-Windows OS", Windows = "Windows OS" });
str_enum!(Priority { Low = "PRIO_LOW", High = "PRIO_HIGH" });
str_enum!(KernType {
    BzImage = "KERNEL_BZIMAGE",
    RawImage = "KERNEL_RAWIMAGE",
    Elf = "KERNEL_ELF",
});
str_enum!(DisplayType { Window = "Window", FullScreen = "Full screen" });
str_enum!(ConsoleUseType { Console = "Virtio console", SerialPort = "Virtio serial port" });
str_enum!(ConsoleBackend {
    Pty = "pty",
    Stdio = "stdio",
    File = "file",
    SockClient = "sock client",
    SockServer = "sock server",
    Tty = "tty",
});
str_enum!(VirtioFramework {
    KernelVhost = "Kernel based (Virtual Host)",
    UserSpace = "User space based (VBSU)",
});

/// A hexadecimal number as ACRN writes it (`0[Xx][0-9A-Fa-f]+|0`); serialized as `0x...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hex(pub u64);

impl Hex {
    /// Parses ACRN's HexFormat exactly (`0x1F`, `0X1f` or `0`).
    pub fn parse(s: &str) -> Option<Hex> {
        if s == "0" {
            return Some(Hex(0));
        }
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > 16 {
            return None;
        }
        u64::from_str_radix(
            if significant.is_empty() {
                "0"
            } else {
                significant
            },
            16,
        )
        .ok()
        .map(Hex)
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:X}", self.0)
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hex::parse(s.trim())
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a hex number like 0x1F")))
    }
}

impl JsonSchema for Hex {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Hex".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(0[Xx][0-9A-Fa-f]+|0)$",
            "description": "hexadecimal number, e.g. 0x2000"
        })
    }
}

/// A virtual PCI address `BB:DD.F` (VBDFType: `[0-9A-Fa-f]{1,2}:[0-1][0-9A-Fa-f]\.[0-7]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vbdf {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Vbdf {
    pub fn parse(s: &str) -> Option<Vbdf> {
        let (bus, rest) = s.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        let hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
        if bus.is_empty() || bus.len() > 2 || !hex(bus) || dev.len() != 2 || !hex(dev) {
            return None;
        }
        if !matches!(dev.as_bytes()[0], b'0' | b'1') || func.len() != 1 {
            return None;
        }
        let func = func.parse::<u8>().ok().filter(|f| *f <= 7)?;
        Some(Vbdf {
            bus: u8::from_str_radix(bus, 16).ok()?,
            dev: u8::from_str_radix(dev, 16).ok()?,
            func,
        })
    }
}

impl fmt::Display for Vbdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

impl Serialize for Vbdf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Vbdf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Vbdf::parse(s.trim())
            .ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a vBDF like 00:08.0")))
    }
}

impl JsonSchema for Vbdf {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Vbdf".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9A-Fa-f]{1,2}:[0-1][0-9A-Fa-f]\\.[0-7]$",
            "description": "virtual PCI bus:device.function, e.g. 00:08.0"
        })
    }
}

/// A whole scenario: `<acrn-config>` with one `<hv>` and the `<vm>`s in file order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Scenario {
    /// Root attribute `board` (optional; ACRN's own files omit it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub board: Option<String>,
    /// Root attribute `scenario` (optional).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    pub hv: Hv,
    pub vm: Vec<Vm>,
    /// Where each element came from; never serialized.
    #[serde(skip)]
    #[schemars(skip)]
    pub spans: SpanTable,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Hv {
    #[serde(rename = "BUILD_TYPE", skip_serializing_if = "Option::is_none")]
    pub build_type: Option<BuildType>,
    #[serde(rename = "FEATURES", skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vuart_connections: Option<VuartConnections>,
    #[serde(rename = "DEBUG_OPTIONS", skip_serializing_if = "Option::is_none")]
    pub debug_options: Option<DebugOptions>,
    #[serde(rename = "MEMORY", skip_serializing_if = "Option::is_none")]
    pub memory: Option<HvMemory>,
    #[serde(rename = "CAPACITIES", skip_serializing_if = "Option::is_none")]
    pub capacities: Option<Capacities>,
    #[serde(rename = "MISC_CFG", skip_serializing_if = "Option::is_none")]
    pub misc_cfg: Option<MiscCfg>,
    #[serde(rename = "HIDDEN_PDEV_REGION", skip_serializing_if = "Option::is_none")]
    pub hidden_pdev_region: Option<HiddenPdevRegion>,
    #[serde(rename = "CACHE_REGION", skip_serializing_if = "Option::is_none")]
    pub cache_region: Option<CacheRegion>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Features {
    #[serde(rename = "RELOC_ENABLED", skip_serializing_if = "Option::is_none")]
    pub reloc_enabled: Option<bool>,
    #[serde(rename = "SCHEDULER", skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<Scheduler>,
    #[serde(rename = "MULTIBOOT2_ENABLED", skip_serializing_if = "Option::is_none")]
    pub multiboot2_enabled: Option<bool>,
    #[serde(
        rename = "SERVICE_VM_SUPERVISOR_ENABLED",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_vm_supervisor_enabled: Option<bool>,
    #[serde(
        rename = "SPLIT_LOCK_DETECTION_ENABLED",
        skip_serializing_if = "Option::is_none"
    )]
    pub split_lock_detection_enabled: Option<bool>,
    #[serde(
        rename = "UC_LOCK_DETECTION_ENABLED",
        skip_serializing_if = "Option::is_none"
    )]
    pub uc_lock_detection_enabled: Option<bool>,
    #[serde(rename = "SECURITY_VM_FIXUP", skip_serializing_if = "Option::is_none")]
    pub security_vm_fixup: Option<bool>,
    #[serde(rename = "KEEP_IRQ_DISABLED", skip_serializing_if = "Option::is_none")]
    pub keep_irq_disabled: Option<bool>,
    #[serde(rename = "HYPERV_ENABLED", skip_serializing_if = "Option::is_none")]
    pub hyperv_enabled: Option<bool>,
    #[serde(rename = "IOMMU_ENFORCE_SNP", skip_serializing_if = "Option::is_none")]
    pub iommu_enforce_snp: Option<bool>,
    #[serde(rename = "ACPI_PARSE_ENABLED", skip_serializing_if = "Option::is_none")]
    pub acpi_parse_enabled: Option<bool>,
    #[serde(
        rename = "L1D_VMENTRY_ENABLED",
        skip_serializing_if = "Option::is_none"
    )]
    pub l1d_vmentry_enabled: Option<bool>,
    #[serde(rename = "MCE_ON_PSC_ENABLED", skip_serializing_if = "Option::is_none")]
    pub mce_on_psc_enabled: Option<bool>,
    #[serde(rename = "VUART_RX_BUF_SIZE", skip_serializing_if = "Option::is_none")]
    pub vuart_rx_buf_size: Option<u32>,
    #[serde(rename = "VUART_TX_BUF_SIZE", skip_serializing_if = "Option::is_none")]
    pub vuart_tx_buf_size: Option<u32>,
    #[serde(rename = "VUART_TIMER_PCPU", skip_serializing_if = "Option::is_none")]
    pub vuart_timer_pcpu: Option<u32>,
    #[serde(rename = "RDT", skip_serializing_if = "Option::is_none")]
    pub rdt: Option<Rdt>,
    #[serde(rename = "IVSHMEM", skip_serializing_if = "Option::is_none")]
    pub ivshmem: Option<Ivshmem>,
    #[serde(rename = "SSRAM", skip_serializing_if = "Option::is_none")]
    pub ssram: Option<Ssram>,
    #[serde(
        rename = "CPU_PERFORMANCE_POLICY",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_performance_policy: Option<CpuPerformancePolicy>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Rdt {
    #[serde(rename = "RDT_ENABLED", skip_serializing_if = "Option::is_none")]
    pub rdt_enabled: Option<bool>,
    #[serde(rename = "CDP_ENABLED", skip_serializing_if = "Option::is_none")]
    pub cdp_enabled: Option<bool>,
    #[serde(rename = "VCAT_ENABLED", skip_serializing_if = "Option::is_none")]
    pub vcat_enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Ivshmem {
    #[serde(rename = "IVSHMEM_REGION", skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<IvshmemRegion>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct IvshmemRegion {
    /// `\w{1,27}`.
    #[serde(rename = "NAME")]
    pub name: String,
    #[serde(rename = "PROVIDED_BY", skip_serializing_if = "Option::is_none")]
    pub provided_by: Option<ProvidedBy>,
    /// Size in MB: a power of two from 2 to 512.
    #[serde(rename = "IVSHMEM_SIZE", skip_serializing_if = "Option::is_none")]
    pub size_mb: Option<u32>,
    #[serde(rename = "IVSHMEM_REGION_ID", skip_serializing_if = "Option::is_none")]
    pub region_id: Option<String>,
    #[serde(rename = "IVSHMEM_VMS")]
    pub vms: IvshmemVms,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct IvshmemVms {
    #[serde(rename = "IVSHMEM_VM", skip_serializing_if = "Vec::is_empty")]
    pub vm: Vec<IvshmemVm>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct IvshmemVm {
    #[serde(rename = "VM_NAME")]
    pub vm_name: String,
    #[serde(rename = "VBDF", skip_serializing_if = "Option::is_none")]
    pub vbdf: Option<Vbdf>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Ssram {
    #[serde(rename = "SSRAM_ENABLED", skip_serializing_if = "Option::is_none")]
    pub ssram_enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VuartConnections {
    #[serde(rename = "vuart_connection", skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<VuartConnection>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VuartConnection {
    pub name: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub vuart_type: Option<VuartType>,
    /// Exactly two endpoints.
    #[serde(rename = "endpoint")]
    pub endpoints: Vec<VuartEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VuartEndpoint {
    pub vm_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_port: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vbdf: Option<Vbdf>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct DebugOptions {
    /// `(.*ttyS[\d]+)|None`.
    #[serde(rename = "SERIAL_CONSOLE", skip_serializing_if = "Option::is_none")]
    pub serial_console: Option<String>,
    #[serde(rename = "MEM_LOGLEVEL", skip_serializing_if = "Option::is_none")]
    pub mem_loglevel: Option<u8>,
    #[serde(rename = "NPK_LOGLEVEL", skip_serializing_if = "Option::is_none")]
    pub npk_loglevel: Option<u8>,
    #[serde(rename = "CONSOLE_LOGLEVEL", skip_serializing_if = "Option::is_none")]
    pub console_loglevel: Option<u8>,
    #[serde(rename = "CONSOLE_VM", skip_serializing_if = "Option::is_none")]
    pub console_vm: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HvMemory {
    #[serde(rename = "STACK_SIZE", skip_serializing_if = "Option::is_none")]
    pub stack_size: Option<Hex>,
    #[serde(rename = "HV_RAM_START", skip_serializing_if = "Option::is_none")]
    pub hv_ram_start: Option<Hex>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Capacities {
    #[serde(rename = "MAX_VM_NUM", skip_serializing_if = "Option::is_none")]
    pub max_vm_num: Option<u32>,
    #[serde(rename = "MAX_IOAPIC_NUM", skip_serializing_if = "Option::is_none")]
    pub max_ioapic_num: Option<u32>,
    #[serde(rename = "MAX_PCI_BUS_NUM", skip_serializing_if = "Option::is_none")]
    pub max_pci_bus_num: Option<u32>,
    #[serde(rename = "MAX_PCI_DEV_NUM", skip_serializing_if = "Option::is_none")]
    pub max_pci_dev_num: Option<u32>,
    #[serde(rename = "MAX_IOAPIC_LINES", skip_serializing_if = "Option::is_none")]
    pub max_ioapic_lines: Option<u32>,
    #[serde(rename = "MAX_PT_IRQ_ENTRIES", skip_serializing_if = "Option::is_none")]
    pub max_pt_irq_entries: Option<u32>,
    #[serde(rename = "MAX_MSIX_TABLE_NUM", skip_serializing_if = "Option::is_none")]
    pub max_msix_table_num: Option<u32>,
    #[serde(rename = "MAX_EMULATED_MMIO", skip_serializing_if = "Option::is_none")]
    pub max_emulated_mmio: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MiscCfg {
    #[serde(rename = "GPU_SBDF", skip_serializing_if = "Option::is_none")]
    pub gpu_sbdf: Option<Hex>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HiddenPdevRegion {
    #[serde(rename = "HIDDEN_PDEV", skip_serializing_if = "Vec::is_empty")]
    pub hidden_pdev: Vec<Vbdf>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CacheRegion {
    #[serde(rename = "CACHE_ALLOCATION", skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<CacheAllocation>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CacheAllocation {
    #[serde(rename = "CACHE_ID")]
    pub cache_id: Hex,
    #[serde(rename = "CACHE_LEVEL")]
    pub cache_level: u32,
    #[serde(rename = "POLICY")]
    pub policies: Vec<CachePolicy>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CachePolicy {
    #[serde(rename = "VM")]
    pub vm: String,
    #[serde(rename = "VCPU")]
    pub vcpu: u32,
    #[serde(rename = "TYPE", skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<CacheType>,
    #[serde(rename = "CLOS_MASK")]
    pub clos_mask: Hex,
}

/// One `<vm>`. Which fields may be present depends on `load_order` (see `spec`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Vm {
    /// The `id` attribute.
    pub id: u32,
    /// Required; `None` only in a model that failed validation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_order: Option<LoadOrder>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_type: Option<VmType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_vuart: Option<ConsoleVuart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_type: Option<OsType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vuart0: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vbootloader: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<VmMemory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_pcpu: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_affinity: Option<CpuAffinity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usb_xhci: Option<UsbXhci>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lapic_passthrough: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_completion_polling: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nested_virtualization_support: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_cat_support: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_cat_number: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_thermal_monitor: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secure_world_support: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hide_mtrr_support: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_vm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stateless: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epc_section: Option<EpcSection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bvt_weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bvt_warp_value: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bvt_warp_limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bvt_unwarp_period: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub companion_vmid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_config: Option<OsConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mmio_resources: Option<MmioResources>,
    /// `(phys, virt)(phys, virt)...` pairs of legacy INTx lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pt_intx: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pci_devs: Option<PciDevs>,
    #[serde(rename = "PTM", skip_serializing_if = "Option::is_none")]
    pub ptm: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customized_parameters: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtio_devices: Option<VirtioDevices>,
}

impl Hv {
    /// Every `IVSHMEM_REGION`, in file order.
    pub fn ivshmem_regions(&self) -> impl Iterator<Item = &IvshmemRegion> {
        self.features
            .iter()
            .flat_map(|f| f.ivshmem.iter())
            .flat_map(|i| i.regions.iter())
    }
}

impl Vm {
    /// The VM's `memory/size` in MB; a VM without `<memory>` (optional in ACRN's schema and
    /// not default-populated) runs with the schema default, 1024 MB.
    pub fn memory_size_mb(&self) -> u64 {
        self.memory
            .as_ref()
            .and_then(|m| m.size)
            .unwrap_or(super::spec::DEFAULT_MEMORY_MB)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VmMemory {
    /// MB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hpa_region: Vec<HpaRegion>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HpaRegion {
    pub start_hpa: Hex,
    /// MB (not bytes).
    pub size_hpa: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct CpuAffinity {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pcpu: Vec<Pcpu>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Pcpu {
    pub pcpu_id: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_time_vcpu: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct UsbXhci {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub usb_dev: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct EpcSection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<Hex>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct OsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kern_type: Option<KernType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kern_mod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ramdisk_mod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bootargs: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kern_load_addr: Option<Hex>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kern_entry_addr: Option<Hex>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MmioResources {
    #[serde(rename = "TPM2", skip_serializing_if = "Option::is_none")]
    pub tpm2: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p2sb: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PciDevs {
    /// `"BB:DD.F description"`; only the leading BDF is used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pci_dev: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VirtioDevices {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<VirtioGpu>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console: Vec<VirtioConsole>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<VirtioNetwork>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<VirtioInput>,
    /// Backing file paths.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<String>,
    /// Guest CIDs (3..4294967294).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vsock: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VirtioGpu {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_type: Option<DisplayType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub displays: Option<Displays>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Displays {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub display: Vec<Display>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Display {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_resolutions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub horizontal_offset: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertical_offset: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VirtioConsole {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_type: Option<ConsoleUseType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_type: Option<ConsoleBackend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sock_file_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tty_device_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VirtioNetwork {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtio_framework: Option<VirtioFramework>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct VirtioInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_device_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}
