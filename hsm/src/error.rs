use acrn_abi::vm::VmState;

use crate::transport::HcError;

/// Everything that can go wrong in the HSM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HsmError {
    /// The hypervisor refused a hypercall.
    #[error("{call}: {err}")]
    Hypercall {
        /// Name of the hypercall.
        call: &'static str,
        /// What the hypervisor returned.
        err: HcError,
    },
    /// The operation is not allowed in the VM's current state (reference §4.6).
    #[error("VM {vmid}: cannot {op} while {state:?}")]
    InvalidState {
        /// Relative VM ID.
        vmid: u16,
        /// The refused operation.
        op: &'static str,
        /// The state the VM is in.
        state: VmState,
    },
    /// A caller-supplied value is out of range or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// `HC_CREATE_VM` succeeded but returned an unusable VM ID.
    #[error("the hypervisor returned VM id {0:#x}")]
    InvalidVmid(u16),
    /// The hypervisor returned a VM ID this HSM already manages.
    #[error("VM {0} is already registered")]
    VmExists(u16),
    /// No VM with that ID is registered.
    #[error("no VM {0}")]
    NoSuchVm(u16),
    /// A memory segment overlaps one already mapped (or another in the same batch).
    #[error("memory segment at {0:#x} overlaps a mapped one")]
    Overlap(u64),
    /// No mapped segment matches the unmap request.
    #[error("no mapped memory segment at {gpa:#x} with size {size:#x}")]
    NotMapped {
        /// User VM GPA.
        gpa: u64,
        /// Size.
        size: u64,
    },
    /// The VM has [`crate::ACRN_MEM_MAPPING_MAX`] segments already.
    #[error("too many memory segments")]
    TooManySegments,
    /// The VM already has a default I/O request client.
    #[error("the VM already has a default I/O request client")]
    ClientExists,
    /// The client is not (or no longer) registered with this VM.
    #[error("no such I/O request client")]
    NoClient,
    /// The vCPU has no request owned by this client (never dispatched, or already completed).
    #[error("vCPU {0} has no request pending for this client")]
    NotPending(u16),
    /// An ioeventfd for the same address and data exists.
    #[error("an ioeventfd already covers this address and data")]
    IoEventFdConflict,
    /// The ioeventfd or irqfd is not (or no longer) assigned.
    #[error("no such notifier")]
    NoNotifier,
}
