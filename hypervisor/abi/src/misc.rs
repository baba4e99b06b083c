//! API version and debug structures.

/// `HV_API_MAJOR_VERSION`.
pub const HV_API_MAJOR_VERSION: u32 = 1;
/// `HV_API_MINOR_VERSION`.
pub const HV_API_MINOR_VERSION: u32 = 0;

/// `struct hc_api_version` (8 bytes): output of `HC_GET_API_VERSION`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HcApiVersion {
    /// Major version.
    pub major_version: u32,
    /// Minor version.
    pub minor_version: u32,
}

/// `struct acrn_hw_info` (8 bytes): output of `HC_GET_HW_INFO`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnHwInfo {
    /// Number of physical CPUs.
    pub cpu_num: u16,
    /// Reserved.
    pub reserved: [u16; 3],
}

/// `struct hv_npk_log_param` (16 bytes): argument of `HC_SETUP_HV_NPK_LOG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct HvNpkLogParam {
    pub cmd: u16,
    pub res: u16,
    pub loglevel: u16,
    pub reserved: u16,
    pub mmio_addr: u64,
}

/// `enum profiling_cmd_type`: `param1` of `HC_PROFILING_OPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u64)]
#[allow(missing_docs)]
pub enum ProfilingCmd {
    MsrOps = 0,
    GetVmInfo = 1,
    GetVersion = 2,
    GetControlSwitch = 3,
    SetControlSwitch = 4,
    ConfigPmi = 5,
    ConfigVmSwitch = 6,
    GetPcpuId = 7,
    GetStatus = 8,
}
