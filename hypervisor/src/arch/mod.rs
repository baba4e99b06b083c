//! Architecture and vendor backends. `svm` is AMD's; Intel's VMX backend lives in `vmx`.
pub mod amdvi;
pub mod cpuid;
pub mod svm;
pub mod vmx;
pub mod vtd;
#[cfg(target_os = "none")]
pub mod x86;
