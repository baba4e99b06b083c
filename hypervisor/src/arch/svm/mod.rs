//! AMD SVM backend: detection, per-pCPU enabling, and [`SvmVcpu`], which implements
//! [`crate::vcpu::Vcpu`] over a VMCB with nested paging.
pub mod vmcb;

#[cfg(target_os = "none")]
mod backend;
#[cfg(target_os = "none")]
pub use backend::*;
