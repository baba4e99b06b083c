//! Errno values used in hypercall results (ACRN `hypervisor/include/lib/errno.h`, equal to
//! Linux's). Hypercalls return the negated value in RAX.

/// Operation not permitted (also what ACRN's many literal `-1` returns read as).
pub const EPERM: i32 = 1;
/// I/O error.
pub const EIO: i32 = 5;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// Permission denied.
pub const EACCES: i32 = 13;
/// Bad address.
pub const EFAULT: i32 = 14;
/// Device or resource busy.
pub const EBUSY: i32 = 16;
/// File exists.
pub const EEXIST: i32 = 17;
/// No such device.
pub const ENODEV: i32 = 19;
/// Invalid argument (also returned for an unmapped parameter GPA).
pub const EINVAL: i32 = 22;
/// Unknown hypercall, or a hypercall on a VM it may not target.
pub const ENOTTY: i32 = 25;
/// Function not implemented.
pub const ENOSYS: i32 = 38;
/// Timed out.
pub const ETIMEDOUT: i32 = 110;

/// The symbolic name of a positive errno value, if it is one of the above.
pub fn name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        EPERM => "EPERM",
        EIO => "EIO",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EEXIST => "EEXIST",
        ENODEV => "ENODEV",
        EINVAL => "EINVAL",
        ENOTTY => "ENOTTY",
        ENOSYS => "ENOSYS",
        ETIMEDOUT => "ETIMEDOUT",
        _ => return None,
    })
}
