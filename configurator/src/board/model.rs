//! The typed board model: the structured sections of a board file.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::legacy::{Bdf, IomemRange, LspciDevice, MmcfgRegion, PciVidPid, SerialPort};
use crate::xml::Span;

/// A whole board file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Board {
    /// The `board` attribute of the root element.
    pub name: String,
    pub legacy: Legacy,
    pub processors: Processors,
    pub caches: Caches,
    pub memory: Vec<MemoryRange>,
    pub ioapics: Vec<Ioapic>,
    pub devices: Devices,
    /// `device-classes` (absent in older board files).
    pub device_classes: Option<DeviceClasses>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// The raw-text sections, parsed where the tools consume them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Legacy {
    /// `PCI_DEVICE` (lspci -vv).
    pub pci_devices: Vec<LspciDevice>,
    /// `PCI_VID_PID` (lspci -n).
    pub pci_vid_pid: Vec<PciVidPid>,
    /// `TTYS_INFO`.
    pub serial_ports: Vec<SerialPort>,
    /// `IOMEM_INFO` (/proc/iomem), in file order.
    pub iomem: Vec<IomemRange>,
    /// The `PCI MMCONFIG` line of `IOMEM_INFO`.
    pub iomem_mmcfg: Option<MmcfgRegion>,
    /// `MMCFG_BASE_INFO` (`DEFAULT_PCI_MMCFG_BASE`).
    pub mmcfg_base: Option<u64>,
    /// `AVAILABLE_IRQ_INFO`.
    pub available_irqs: Vec<u32>,
    /// `TOTAL_MEM_INFO`, in kB.
    pub total_mem_kb: Option<u64>,
    /// `CPU_PROCESSOR_INFO`.
    pub cpu_processors: Vec<u32>,
    /// `MAX_MSIX_TABLE_NUM`.
    pub max_msix_table_num: Option<u64>,
    /// `CPU_BRAND` without the surrounding quotes.
    pub cpu_brand: String,
    /// Text of the sections kept verbatim (BIOS_INFO, PM_INFO, DRHD_INFO, CX_INFO, ...),
    /// keyed by element name, with the surrounding whitespace trimmed.
    pub raw: BTreeMap<String, String>,
}

/// `processors`: CPU models and the thread topology.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Processors {
    pub models: Vec<CpuModel>,
    /// Top-level topology nodes (normally `die`).
    pub topology: Vec<TopologyNode>,
}

/// Core type of a hybrid part (CPUID leaf 0x1A).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CoreType {
    Core,
    Atom,
    Reserved,
}

/// `processors/model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CpuModel {
    pub description: String,
    pub family_id: Option<u32>,
    pub model_id: Option<u32>,
    pub core_type: Option<CoreType>,
    pub native_model_id: Option<String>,
    /// `capability id=..` flags, e.g. `vmx`, `x2apic`, `gbyte_pages`.
    pub capabilities: Vec<String>,
    /// `attribute id=..` values, e.g. `physical_address_bits` -> `39`.
    pub attributes: BTreeMap<String, String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// A level of the topology: `die`, `tile`, `module`, `core` (any nesting the board has).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyNode {
    pub level: String,
    pub id: String,
    pub children: Vec<TopologyNode>,
    pub threads: Vec<Thread>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// A hardware thread (a logical CPU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Thread {
    /// Linux CPU number (ACRN's pCPU id).
    pub cpu_id: u32,
    pub apic_id: u32,
    pub x2apic_id: Option<u32>,
    pub family_id: Option<u32>,
    pub model_id: Option<u32>,
    pub stepping_id: Option<u32>,
    pub core_type: Option<CoreType>,
    pub native_model_id: Option<String>,
    pub freqdomain_cpus: Option<String>,
    pub guaranteed_performance_lvl: Option<u32>,
    pub highest_performance_lvl: Option<u32>,
    pub lowest_performance_lvl: Option<u32>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// `caches`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Caches {
    pub caches: Vec<Cache>,
    /// Top-level `caches/parameter` (RTCT data).
    pub parameters: Vec<Parameter>,
}

/// Cache type as CPUID leaf 4 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CacheType {
    Data,
    Instruction,
    Unified,
}

/// One `caches/cache`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Cache {
    pub level: u32,
    pub id: u32,
    pub cache_type: CacheType,
    pub cache_size: Option<u64>,
    pub line_size: Option<u32>,
    pub ways: Option<u32>,
    pub sets: Option<u32>,
    /// APIC IDs of the threads sharing this cache.
    pub processors: Vec<u32>,
    pub cat: Option<CatCapability>,
    pub mba: Option<Capability>,
    pub software_sram: Option<SoftwareSram>,
    /// `parameter id=..` children (`IA Waymask`, `GT Waymask`, latency, ...).
    pub parameters: Vec<Parameter>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// Cache Allocation Technology on one cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CatCapability {
    pub capacity_mask_length: u32,
    pub clos_number: Option<u32>,
    /// Code and Data Prioritization (nested in CAT or a sibling capability).
    pub cdp: bool,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// A Software SRAM (pseudo-locked) region of a cache, from RTCT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SoftwareSram {
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub size: Option<u64>,
    /// Every simple child as written.
    pub fields: BTreeMap<String, String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// A `parameter id=..` element: its own text and the text of each child, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Parameter {
    pub id: String,
    pub text: String,
    pub values: Vec<Field>,
}

/// A simple child element: name and trimmed text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Field {
    pub name: String,
    pub value: String,
}

/// `memory/range`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryRange {
    pub start: u64,
    /// Inclusive end.
    pub end: u64,
    pub size: u64,
    /// `None` (or `RAM`) for RAM; RTCT regions carry e.g. `TCC Error Log`.
    pub id: Option<String>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

impl MemoryRange {
    /// ACRN's selection `range[not(@id) or @id='RAM']`.
    pub fn is_ram(&self) -> bool {
        self.id.as_deref().is_none_or(|id| id == "RAM")
    }
}

/// `ioapics/ioapic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ioapic {
    pub id: u32,
    pub address: u64,
    pub gsi_base: u32,
    pub gsi_number: u32,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// `devices`: the ACPI/PCI device tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Devices {
    pub nodes: Vec<DeviceNode>,
    /// `devices/parameter` (TCC limits).
    pub parameters: Vec<Parameter>,
}

/// What element a [`DeviceNode`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    Bus,
    Device,
    ThermalZone,
}

/// A `bus`, `device` or `thermalzone` of the device tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceNode {
    pub kind: NodeKind,
    /// `type` attribute of a bus (`system`, `pci`, ...).
    pub bus_type: Option<String>,
    /// `address` attribute: `0xDDDDFFFF` for PCI functions, the bus number for PCI buses.
    pub address: Option<u64>,
    pub id: Option<String>,
    pub description: Option<String>,
    pub vendor: Option<u16>,
    pub identifier: Option<u16>,
    pub subsystem_vendor: Option<u16>,
    pub subsystem_identifier: Option<u16>,
    pub class: Option<u32>,
    pub acpi_object: Option<String>,
    pub compatible_ids: Vec<String>,
    pub acpi_uid: Option<String>,
    /// Hex-encoded AML used to rebuild the device's ACPI object for pre-launched VMs.
    pub aml_template: Option<String>,
    pub status: Option<DeviceStatus>,
    pub resources: Vec<Resource>,
    pub capabilities: Vec<Capability>,
    /// `interrupt_pin_routing` of a PCI bus: its ACPI `_PRT`.
    pub intx_routing: Vec<PinRoute>,
    /// Computed for PCI functions: bus from the enclosing PCI bus, device/function from
    /// `address`.
    pub bdf: Option<Bdf>,
    pub children: Vec<DeviceNode>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

impl DeviceNode {
    /// Depth-first iterator over this node and all nodes below it.
    pub fn walk(&self) -> impl Iterator<Item = &DeviceNode> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let n = stack.pop()?;
            stack.extend(n.children.iter().rev());
            Some(n)
        })
    }

    /// The capability with this id (`MSI`, `MSI-X`, `SR-IOV`, ...).
    pub fn capability(&self, id: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.id == id)
    }

    /// BARs: resources with an `id` of `barN`.
    pub fn bars(&self) -> impl Iterator<Item = &Resource> {
        self.resources
            .iter()
            .filter(|r| r.id.as_deref().is_some_and(|i| i.starts_with("bar")))
    }
}

/// One `interrupt_pin_routing/routing/mapping`: INTx pin `pin` of the devices at `address`
/// (`0xDDDDFFFF`, any function) arrives on GSI `source` (a decimal number), or on interrupt
/// `index` of the link device whose ACPI path `source` is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PinRoute {
    pub address: u64,
    /// `INTA#`..`INTD#`.
    pub pin: String,
    pub source: String,
    pub index: u32,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

impl PinRoute {
    /// The device number and pin (0 = INTA#) this route is for.
    pub fn device_pin(&self) -> Option<(u8, u8)> {
        let device = u8::try_from(self.address >> 16).ok().filter(|d| *d < 32)?;
        let pin = match self.pin.as_str() {
            "INTA#" => 0,
            "INTB#" => 1,
            "INTC#" => 2,
            "INTD#" => 3,
            _ => return None,
        };
        Some((device, pin))
    }
}

/// `status` of an ACPI device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceStatus {
    pub present: bool,
    pub enabled: bool,
    pub functioning: bool,
}

/// A `resource` of a device or bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Resource {
    /// `memory`, `io_port`, `irq`, `interrupt_pin`, `bus_number`, ...
    pub kind: String,
    pub min: Option<u64>,
    /// Inclusive end; `None` for an empty range.
    pub max: Option<u64>,
    pub len: Option<u64>,
    /// `resN` (ACPI) or `barN` (PCI BAR).
    pub id: Option<String>,
    /// 32 or 64 for memory BARs.
    pub width: Option<u32>,
    pub prefetchable: Option<bool>,
    /// IRQ number(s) of `irq` resources (an ACPI device may list several possible IRQs).
    pub irqs: Vec<u32>,
    /// `INTA#`..`INTD#` of `interrupt_pin` resources.
    pub pin: Option<String>,
    pub source: Option<String>,
    pub index: Option<u32>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

impl Resource {
    /// The BAR index of a `barN` resource.
    pub fn bar_index(&self) -> Option<u8> {
        self.id.as_deref()?.strip_prefix("bar")?.parse().ok()
    }
}

/// A `capability` of a device (PCI capability or TPM data), with typed MSI/MSI-X fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Capability {
    pub id: String,
    /// MSI: number of vectors.
    pub count: Option<u32>,
    pub msix: Option<MsixInfo>,
    /// Other simple children (SR-IOV `total_vfs`, TPM `log_area_start_address`, ...).
    pub fields: Vec<Field>,
    /// Nested capabilities (`64-bit address`, `per-vector masking`, `CDP`, ...).
    pub capabilities: Vec<Capability>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

impl Capability {
    /// Text of a simple child.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }
}

/// MSI-X table layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MsixInfo {
    pub table_size: u32,
    pub table_bir: Option<u8>,
    pub table_offset: Option<u64>,
    pub pba_bir: Option<u8>,
    pub pba_offset: Option<u64>,
}

/// `device-classes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceClasses {
    pub inputs: Vec<InputDevice>,
    pub serials: Vec<TtyClass>,
}

/// `device-classes/inputs/input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InputDevice {
    pub name: String,
    pub phys: String,
}

/// `device-classes/ttys/serial`: `type` is `/sys/class/tty/*/type` (`0` = no UART).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TtyClass {
    pub dev_path: String,
    pub uart_type: String,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}
