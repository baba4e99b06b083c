//! Hypercall fuzzing from the Service VM: random calls that must all fail, each with the error
//! the ABI documents (reference acrn-abi.md §1.1/§1.2):
//!
//! * an ID whose handler index (`id & 0xFF`) has no handler, an unimplemented one
//!   (0x50-0x52), or one that needs guest flags the Service VM lacks (Trusty 0x70-0x72,
//!   TEE 0x90-0x91): `-ENOTTY`;
//! * a VM operation on a relative VM ID no VM can have (64 and up): `-ENOTTY`;
//! * a structure pointer no memory backs (at or above 2^48): `-EINVAL` when the hypervisor
//!   copies it (`HC_GET_API_VERSION`, `HC_GET_PLATFORM_INFO`), `-EINVAL` or `-ENOTTY` where the copy decides the target
//!   VM (`HC_CREATE_VM`, `HC_VM_SET_MEMORY_REGIONS`);
//! * `HC_SET_CALLBACK_VECTOR` outside 0x20..=0xFF: `-EINVAL`;
//! * with a VM created by the fuzzer (state CREATED, no I/O request buffer): destroy, reset,
//!   start, a second create of the same name and out-of-range vCPUs — each `-1` (ACRN's literal
//!   -1, i.e. `-EPERM`) or `-EINVAL`; a bad I/O request buffer pointer `-EINVAL`.
//!
//! The generator is pure (host-tested); the kernel issues the calls and compares.

use acrn_abi::errno::{EINVAL, ENOTTY, EPERM};
use acrn_abi::hypercall::*;

/// A call and the results it may return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub id: u64,
    pub p1: u64,
    pub p2: u64,
    pub what: &'static str,
    pub expect: &'static [i64],
}

impl Case {
    pub fn accepts(&self, rax: i64) -> bool {
        self.expect.contains(&rax)
    }
}

const NOTTY: &[i64] = &[-(ENOTTY as i64)];
const INVAL: &[i64] = &[-(EINVAL as i64)];
const INVAL_OR_NOTTY: &[i64] = &[-(EINVAL as i64), -(ENOTTY as i64)];
const STATE: &[i64] = &[-(EPERM as i64), -(EINVAL as i64)];

/// Handler indices with a handler a Service VM may call.
const SERVICE_IDX: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x23, 0x24, 0x25, 0x30, 0x31,
    0x32, 0x33, 0x41, 0x42, 0x43, 0x44, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x61, 0x62,
    0x63, 0x80,
];

/// Calls taking a relative VM ID in `param1` and no pointer the hypervisor reads first.
const VM_OPS: &[u64] = &[
    HC_DESTROY_VM,
    HC_START_VM,
    HC_PAUSE_VM,
    HC_RESET_VM,
    HC_NOTIFY_REQUEST_FINISH,
    HC_SET_IRQLINE,
];

/// Where the fuzzer's own VM stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Relative ID of a VM in CREATED state without an I/O request buffer.
    pub vmid: u16,
    /// GPA of a valid `acrn_vm_creation` naming that VM.
    pub creation_gpa: u64,
}

/// xorshift64*: deterministic for a seed, never zero.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn bad_gpa(r: &mut Rng) -> u64 {
    // At or above 2^48: beyond any physical address width, so never backed.
    (1u64 << 48) | (r.next_u64() & !0xF) | (r.below(2) << 63)
}

/// The next random case; stateful ones only when a `target` exists.
pub fn next_case(r: &mut Rng, target: Option<Target>) -> Case {
    let kinds = if target.is_some() { 7 } else { 5 };
    match r.below(kinds) {
        0 => {
            let idx = loop {
                let i = r.next_u64() as u8;
                if !SERVICE_IDX.contains(&i) {
                    break i;
                }
            };
            // Mostly ACRN's 0x80 prefix; sometimes random high bits.
            let high = if r.below(4) == 0 {
                r.next_u64() & !0xFF
            } else {
                0x8000_0000
            };
            Case {
                id: high | u64::from(idx),
                p1: r.next_u64(),
                p2: r.next_u64(),
                what: "unknown or forbidden hypercall",
                expect: NOTTY,
            }
        }
        1 => Case {
            id: VM_OPS[r.below(VM_OPS.len() as u64) as usize],
            p1: 64 + r.below(0xFFFF - 64),
            p2: r.below(16),
            what: "VM operation on a VM that cannot exist",
            expect: NOTTY,
        },
        2 => Case {
            id: if r.below(2) == 0 {
                HC_GET_API_VERSION
            } else {
                HC_GET_PLATFORM_INFO
            },
            p1: bad_gpa(r),
            p2: 0,
            what: "unbacked output pointer",
            expect: INVAL,
        },
        3 => Case {
            id: if r.below(2) == 0 {
                HC_CREATE_VM
            } else {
                HC_VM_SET_MEMORY_REGIONS
            },
            p1: bad_gpa(r),
            p2: 0,
            what: "unbacked input pointer",
            expect: INVAL_OR_NOTTY,
        },
        4 => Case {
            id: HC_SET_CALLBACK_VECTOR,
            p1: if r.below(2) == 0 {
                r.below(0x20)
            } else {
                0x100 + r.below(1 << 20)
            },
            p2: 0,
            what: "callback vector out of range",
            expect: INVAL,
        },
        5 => {
            let t = target.unwrap_or(Target {
                vmid: 0,
                creation_gpa: 0,
            });
            let vm = u64::from(t.vmid);
            match r.below(6) {
                0 => Case {
                    id: HC_DESTROY_VM,
                    p1: vm,
                    p2: 0,
                    what: "destroy while CREATED",
                    expect: STATE,
                },
                1 => Case {
                    id: HC_RESET_VM,
                    p1: vm,
                    p2: 0,
                    what: "reset while CREATED",
                    expect: STATE,
                },
                2 => Case {
                    id: HC_START_VM,
                    p1: vm,
                    p2: 0,
                    what: "start without an I/O request buffer",
                    expect: STATE,
                },
                3 => Case {
                    id: HC_CREATE_VM,
                    p1: t.creation_gpa,
                    p2: 0,
                    what: "create an existing VM",
                    expect: STATE,
                },
                4 => Case {
                    id: HC_NOTIFY_REQUEST_FINISH,
                    p1: vm,
                    p2: 16 + r.below(1000),
                    what: "notify for a vCPU out of range",
                    expect: STATE,
                },
                _ => Case {
                    id: HC_SET_IOREQ_BUFFER,
                    p1: vm,
                    p2: bad_gpa(r),
                    what: "unbacked I/O request buffer pointer",
                    expect: INVAL,
                },
            }
        }
        _ => {
            let t = target.map_or(0, |t| u64::from(t.vmid));
            Case {
                id: HC_VM_GPA2HPA,
                p1: t,
                p2: bad_gpa(r),
                what: "unbacked gpa2hpa pointer",
                expect: INVAL,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_service_vm_hypercall_is_known_and_unknown_ids_avoid_them() {
        for &(id, _) in HYPERCALLS {
            let idx = hc_idx(id);
            let forbidden = [0x50, 0x51, 0x52, 0x70, 0x71, 0x72, 0x90, 0x91];
            assert!(
                SERVICE_IDX.contains(&idx) != forbidden.contains(&idx),
                "{id:#x}"
            );
        }
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            let c = next_case(&mut r, None);
            if c.expect == NOTTY && c.what.starts_with("unknown") {
                assert!(!SERVICE_IDX.contains(&(c.id as u8)));
            }
        }
    }

    #[test]
    fn covers_every_kind_and_never_passes_a_backed_pointer() {
        let t = Target {
            vmid: 1,
            creation_gpa: 0x20_0000,
        };
        let mut r = Rng::new(0xACE);
        let mut kinds = BTreeSet::new();
        for _ in 0..20_000 {
            let c = next_case(&mut r, Some(t));
            kinds.insert(c.what);
            assert!(!c.expect.is_empty() && c.expect.iter().all(|&e| e < 0));
            if c.id == HC_GET_API_VERSION
                || c.id == HC_GET_PLATFORM_INFO
                || (c.id == HC_CREATE_VM && c.p1 != t.creation_gpa)
            {
                assert!(c.p1 >= 1 << 48);
            }
            if c.id == HC_SET_CALLBACK_VECTOR {
                assert!(!(0x20..=0xFF).contains(&c.p1));
            }
            if c.what.starts_with("VM operation") {
                assert!((64..0xFFFF).contains(&c.p1));
            }
        }
        assert_eq!(kinds.len(), 12, "{kinds:?}");
        let mut a = Rng::new(5);
        let mut b = Rng::new(5);
        assert!((0..100).all(|_| next_case(&mut a, None) == next_case(&mut b, None)));
    }
}
