//! VM creation, guest flags and VM/vCPU states.

use bitflags::bitflags;

/// `ACRN_INVALID_VMID`: the hypervisor writes it into [`AcrnVmCreation::vmid`] on failure, and
/// the HSM uses it for "no VM".
pub const ACRN_INVALID_VMID: u16 = 0xFFFF;
/// `MAX_VM_NAME_LEN`: size of the name field, including the terminating NUL.
pub const MAX_VM_NAME_LEN: usize = 16;

bitflags! {
    /// `GUEST_FLAG_*` (`acrn_common.h`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct GuestFlags: u64 {
        /// Trusty secure world.
        const SECURE_WORLD_ENABLED = 1 << 0;
        /// The VM owns the physical LAPIC (needs `RT`).
        const LAPIC_PASSTHROUGH = 1 << 1;
        /// The hypervisor polls for I/O request completion instead of waiting for a notify.
        const IO_COMPLETION_POLLING = 1 << 2;
        /// Hide MTRRs from the guest.
        const HIDE_MTRR = 1 << 3;
        /// Real-time VM.
        const RT = 1 << 4;
        /// Nested VMX.
        const NVMX_ENABLED = 1 << 5;
        /// Security VM.
        const SECURITY_VM = 1 << 6;
        /// Virtual CAT.
        const VCAT_ENABLED = 1 << 7;
        /// Statically configured VM (its config slot is never reused dynamically).
        const STATIC_VM = 1 << 8;
        /// OP-TEE trusted execution environment VM.
        const TEE = 1 << 9;
        /// OP-TEE rich execution environment VM.
        const REE = 1 << 10;
        /// PMU pass-through.
        const PMU_PASSTHROUGH = 1 << 11;
        /// Virtual HWP.
        const VHWP = 1 << 12;
        /// Virtual thermal monitor.
        const VTM = 1 << 13;
        /// Stateless VM (the platform may shut down while it runs).
        const STATELESS = 1 << 14;
    }
}

/// `DM_OWNED_GUEST_FLAG_MASK`: the flags a device model may set in `HC_CREATE_VM` (release
/// build; debug builds also allow [`GuestFlags::PMU_PASSTHROUGH`]).
pub const DM_OWNED_GUEST_FLAG_MASK: GuestFlags = GuestFlags::SECURE_WORLD_ENABLED
    .union(GuestFlags::LAPIC_PASSTHROUGH)
    .union(GuestFlags::RT)
    .union(GuestFlags::IO_COMPLETION_POLLING);

/// `struct acrn_vm_creation` (48 bytes): argument of `HC_CREATE_VM` and `ACRN_IOCTL_CREATE_VM`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnVmCreation {
    /// Out: relative VM ID, [`ACRN_INVALID_VMID`] on failure.
    pub vmid: u16,
    /// Must be 0.
    pub reserved0: u16,
    /// Out: number of vCPUs (popcount of the pCPU affinity).
    pub vcpu_num: u16,
    /// Must be 0.
    pub reserved1: u16,
    /// VM name, NUL-terminated, selects the VM config slot (Linux calls it `uuid`).
    pub name: [u8; MAX_VM_NAME_LEN],
    /// [`GuestFlags`] bits; only [`DM_OWNED_GUEST_FLAG_MASK`] is honoured.
    pub vm_flag: u64,
    /// User-space VA of the device model's I/O request page (used by the HSM only).
    pub ioreq_buf: u64,
    /// pCPU bitmap; 0 means the static configuration.
    pub cpu_affinity: u64,
}

impl AcrnVmCreation {
    /// Stores `name` NUL-terminated; `false` (and nothing stored) if it does not fit or holds NUL.
    pub fn set_name(&mut self, name: &str) -> bool {
        let bytes = name.as_bytes();
        if bytes.len() >= MAX_VM_NAME_LEN || bytes.contains(&0) {
            return false;
        }
        self.name = [0; MAX_VM_NAME_LEN];
        self.name[..bytes.len()].copy_from_slice(bytes);
        true
    }

    /// The name bytes up to the first NUL.
    pub fn name_bytes(&self) -> &[u8] {
        let end = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MAX_VM_NAME_LEN);
        &self.name[..end]
    }

    /// The guest flags, unknown bits kept.
    pub fn flags(&self) -> GuestFlags {
        GuestFlags::from_bits_retain(self.vm_flag)
    }
}

/// `enum vm_state` of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum VmState {
    /// No VM in this slot.
    PoweredOff = 0,
    /// Created, not yet started (or reset).
    Created = 1,
    /// Running.
    Running = 2,
    /// A real-time VM has powered itself off and waits to be paused.
    ReadyToPowerOff = 3,
    /// All vCPUs stopped.
    Paused = 4,
}

/// vCPU states of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum VcpuState {
    /// Not created.
    Offline = 0,
    /// Created, waiting to run.
    Init = 1,
    /// Running.
    Running = 2,
    /// Stopped for good.
    Zombie = 3,
}

/// `enum acrn_vm_load_order`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum LoadOrder {
    /// Started by the hypervisor with dedicated resources.
    PreLaunchedVm = 0,
    /// The Service VM, started by the hypervisor.
    ServiceVm = 1,
    /// Created by the device model through the HSM.
    PostLaunchedVm = 2,
}

/// `SEVERITY_SAFETY_VM`.
pub const SEVERITY_SAFETY_VM: u8 = 0x40;
/// `SEVERITY_RTVM` (without `SERVICE_VM_SUPERVISOR_ENABLED`).
pub const SEVERITY_RTVM: u8 = 0x30;
/// `SEVERITY_SERVICE_VM`.
pub const SEVERITY_SERVICE_VM: u8 = 0x20;
/// `SEVERITY_STANDARD_VM`.
pub const SEVERITY_STANDARD_VM: u8 = 0x10;

/// `ACRN_PLATFORM_LAPIC_IDS_MAX`.
pub const ACRN_PLATFORM_LAPIC_IDS_MAX: usize = 64;
/// `acrn_platform_info.hw.version` ACRN reports: 1.0 (major in the high byte).
pub const ACRN_PLATFORM_INFO_VERSION: u16 = 0x100;

/// The `hw` half of [`AcrnPlatformInfo`] (128 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformHwInfo {
    /// Physical CPUs.
    pub cpu_num: u16,
    /// [`ACRN_PLATFORM_INFO_VERSION`].
    pub version: u16,
    /// Order of the number of threads sharing an L2 cache.
    pub l2_cat_shift: u32,
    /// Order of the number of threads sharing an L3 cache.
    pub l3_cat_shift: u32,
    /// LAPIC ID of each pCPU (low byte), by pCPU id.
    pub lapic_ids: [u8; ACRN_PLATFORM_LAPIC_IDS_MAX],
    /// Reserved (zero).
    pub reserved: [u8; 52],
}

/// The `sw` half of [`AcrnPlatformInfo`] (128 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlatformSwInfo {
    /// Most vCPUs of one VM.
    pub max_vcpus_per_vm: u16,
    /// VM slots (`CONFIG_MAX_VM_NUM`): entries of the configuration array.
    pub max_vms: u16,
    /// Size of one configuration entry; each starts with an [`AcrnVmConfigHeader`].
    pub vm_config_size: u32,
    /// In: Service VM GPA of a buffer for `max_vms * vm_config_size` bytes, or 0 for none.
    pub vm_configs_addr: u64,
    /// Most Kata container VMs.
    pub max_kata_containers: u64,
    /// Reserved (zero).
    pub reserved: [u8; 104],
}

/// `struct acrn_platform_info` (256 bytes, align 8): argument of `HC_GET_PLATFORM_INFO` (ACRN
/// up to v3.0; later versions removed the call). acrn-dm and ACRN's Linux fork read the VM
/// configurations through it.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcrnPlatformInfo {
    /// Hardware information.
    pub hw: PlatformHwInfo,
    /// Configuration information.
    pub sw: PlatformSwInfo,
}

impl Default for AcrnPlatformInfo {
    fn default() -> Self {
        Self {
            hw: PlatformHwInfo {
                cpu_num: 0,
                version: 0,
                l2_cat_shift: 0,
                l3_cat_shift: 0,
                lapic_ids: [0; ACRN_PLATFORM_LAPIC_IDS_MAX],
                reserved: [0; 52],
            },
            sw: PlatformSwInfo {
                max_vcpus_per_vm: 0,
                max_vms: 0,
                vm_config_size: 0,
                vm_configs_addr: 0,
                max_kata_containers: 0,
                reserved: [0; 104],
            },
        }
    }
}

/// `struct acrn_vm_config_header` (40 bytes, align 8): the public head of each VM
/// configuration entry `HC_GET_PLATFORM_INFO` copies out.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnVmConfigHeader {
    /// [`LoadOrder`] as its `u32` value.
    pub load_order: u32,
    /// VM name, NUL-padded.
    pub name: [u8; MAX_VM_NAME_LEN],
    /// Reserved.
    pub reserved: [u8; 2],
    /// `SEVERITY_*`.
    pub severity: u8,
    /// The C compiler's padding, made explicit.
    pub padding: u8,
    /// pCPUs the VM may run on (bit n = pCPU n).
    pub cpu_affinity: u64,
    /// `GUEST_FLAG_*`.
    pub guest_flags: u64,
}
