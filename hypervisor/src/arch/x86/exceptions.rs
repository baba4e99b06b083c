//! Hypervisor exceptions: dump the registers with the pCPU id and stop that pCPU only.

use super::cpu::this_cpu;
use super::halt_forever;

#[repr(C)]
pub struct ExceptionFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

const NAMES: [&str; 32] = [
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
    "#GP", "#PF", "res", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "res", "res", "res", "res",
    "res", "res", "#HV", "#VC", "#SX", "res",
];

#[no_mangle]
extern "C" fn hv_exception(f: &ExceptionFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let cpu = this_cpu();
    let name = NAMES.get(f.vector as usize).copied().unwrap_or("?");
    crate::console::emergency(format_args!(
        "[hv] pCPU {cpu}: exception {} {name} error {:#x} at rip {:#x} cs {:#x} rflags {:#x} rsp {:#x} ss {:#x} cr2 {:#x}\n\
         [hv]   rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n\
         [hv]   rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}\n\
         [hv]   r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}\n\
         [hv]   r13 {:#018x} r14 {:#018x} r15 {:#018x}\n\
         [hv] pCPU {cpu} stopped\n",
        f.vector, f.error, f.rip, f.cs, f.rflags, f.rsp, f.ss, cr2, f.rax, f.rbx, f.rcx, f.rdx,
        f.rsi, f.rdi, f.rbp, f.r8, f.r9, f.r10, f.r11, f.r12, f.r13, f.r14, f.r15
    ));
    halt_forever()
}
