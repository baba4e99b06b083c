//! Power-management structures of `HC_PM_GET_CPU_STATE` / `ACRN_IOCTL_PM_GET_CPU_STATE`.

/// `PMCMD_VMID_MASK`.
pub const PMCMD_VMID_MASK: u32 = 0xff00_0000;
/// `PMCMD_VCPUID_MASK`.
pub const PMCMD_VCPUID_MASK: u32 = 0x00ff_0000;
/// `PMCMD_STATE_NUM_MASK`.
pub const PMCMD_STATE_NUM_MASK: u32 = 0x0000_ff00;
/// `PMCMD_TYPE_MASK`.
pub const PMCMD_TYPE_MASK: u32 = 0x0000_00ff;
/// `PMCMD_VMID_SHIFT`.
pub const PMCMD_VMID_SHIFT: u32 = 24;
/// `PMCMD_VCPUID_SHIFT`.
pub const PMCMD_VCPUID_SHIFT: u32 = 16;
/// `PMCMD_STATE_NUM_SHIFT`.
pub const PMCMD_STATE_NUM_SHIFT: u32 = 8;

/// `enum acrn_pm_cmd_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PmCmdType {
    /// Number of P-states (1 byte out).
    GetPxCnt = 0,
    /// One [`AcrnPstateData`].
    GetPxData = 1,
    /// Number of C-states (1 byte out).
    GetCxCnt = 2,
    /// One [`AcrnCstateData`] (index 1..=cx_cnt).
    GetCxData = 3,
}

/// Encodes the PM command word: `vmid<<24 | vcpu<<16 | state_idx<<8 | type`.
pub const fn pm_cmd(vmid: u8, vcpu: u8, state_idx: u8, cmd: PmCmdType) -> u64 {
    ((vmid as u64) << PMCMD_VMID_SHIFT)
        | ((vcpu as u64) << PMCMD_VCPUID_SHIFT)
        | ((state_idx as u64) << PMCMD_STATE_NUM_SHIFT)
        | (cmd as u64)
}

/// `struct acrn_acpi_generic_address` (12 bytes, packed).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AcrnAcpiGenericAddress {
    pub space_id: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

/// `struct acrn_cstate_data` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnCstateData {
    /// Register of the C-state.
    pub cx_reg: AcrnAcpiGenericAddress,
    /// C-state type.
    pub r#type: u8,
    /// Worst-case entry+exit latency.
    pub latency: u32,
    /// Average power.
    pub power: u64,
}

/// `struct acrn_pstate_data` (48 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AcrnPstateData {
    pub core_frequency: u64,
    pub power: u64,
    pub transition_latency: u64,
    pub bus_master_latency: u64,
    pub control: u64,
    pub status: u64,
}
