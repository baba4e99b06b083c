//! Thin wrappers around the VMX instructions (the `x86_64` crate has none) and the VM
//! entry/exit stub. Each wrapper reports
//! VMfail (CF or ZF set) as an error; nothing here decides policy.

use super::fields::Field;
use crate::vcpu::GuestRegs;
use core::arch::{asm, global_asm};
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};

/// A VMX instruction failed: `Invalid` = VMfailInvalid (no current VMCS), `Valid(n)` =
/// VMfailValid with VM-instruction error number `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmFail {
    Invalid,
    Valid(u32),
}

/// Turns the flags after a VMX instruction into a result (CF = invalid, ZF = valid + error).
fn check(cf: u8, zf: u8) -> Result<(), VmFail> {
    if cf != 0 {
        Err(VmFail::Invalid)
    } else if zf != 0 {
        Err(VmFail::Valid(
            vmread(super::fields::VM_INSTRUCTION_ERROR).unwrap_or(0) as u32,
        ))
    } else {
        Ok(())
    }
}

/// # Safety
/// `region_pa` is the physical address of a 4 KiB-aligned VMXON region stamped with the revision
/// id, CR0/CR4 satisfy the fixed bits and IA32_FEATURE_CONTROL allows VMXON.
pub unsafe fn vmxon(region_pa: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: per the contract above.
    unsafe {
        asm!("vmxon [{}]", "setc {}", "setz {}", in(reg) &region_pa, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

/// # Safety
/// `vmcs_pa` is the physical address of a VMCS region stamped with the revision id.
pub unsafe fn vmclear(vmcs_pa: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: per the contract above.
    unsafe {
        asm!("vmclear [{}]", "setc {}", "setz {}", in(reg) &vmcs_pa, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

/// # Safety
/// As for [`vmclear`]; the VMCS must not be current on another CPU.
pub unsafe fn vmptrld(vmcs_pa: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: per the contract above.
    unsafe {
        asm!("vmptrld [{}]", "setc {}", "setz {}", in(reg) &vmcs_pa, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

/// Physical address of the current VMCS (all ones when there is none). Only valid in VMX
/// operation, which every caller has checked.
pub fn vmptrst() -> u64 {
    let mut pa: u64 = 0;
    // SAFETY: stores 8 bytes into `pa`; only executed after VMXON on this CPU.
    unsafe { asm!("vmptrst [{}]", in(reg) &mut pa, options(nostack)) };
    pa
}

pub fn vmread(field: Field) -> Result<u64, VmFail> {
    let value: u64;
    let (cf, zf): (u8, u8);
    // SAFETY: VMREAD only reads the current VMCS; failures are reported through the flags.
    unsafe {
        asm!("vmread {}, {}", "setc {}", "setz {}", out(reg) value, in(reg) field.0 as u64,
             out(reg_byte) cf, out(reg_byte) zf, options(nostack, nomem))
    };
    if cf != 0 || zf != 0 {
        return Err(if cf != 0 {
            VmFail::Invalid
        } else {
            VmFail::Valid(0)
        });
    }
    Ok(value)
}

pub fn vmwrite(field: Field, value: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: VMWRITE only changes the current VMCS, which the caller owns.
    unsafe {
        asm!("vmwrite {}, {}", "setc {}", "setz {}", in(reg) field.0 as u64, in(reg) value,
             out(reg_byte) cf, out(reg_byte) zf, options(nostack, nomem))
    };
    check(cf, zf)
}

/// INVEPT types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvEptType {
    SingleContext = 1,
    AllContexts = 2,
}

/// Invalidates cached EPT translations (for one EPTP or for all).
pub fn invept(kind: InvEptType, eptp: u64) -> Result<(), VmFail> {
    let desc: [u64; 2] = [eptp, 0];
    let (cf, zf): (u8, u8);
    // SAFETY: INVEPT only drops TLB entries; the descriptor is a valid 16-byte buffer.
    unsafe {
        asm!("invept {}, [{}]", "setc {}", "setz {}", in(reg) kind as u64, in(reg) &desc,
             out(reg_byte) cf, out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

/// INVVPID types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvVpidType {
    Address = 0,
    SingleContext = 1,
    AllContexts = 2,
}

/// Invalidates linear translations tagged with `vpid` (VPID 0 is the host's and is refused by
/// the CPU for the address and single-context types).
pub fn invvpid(kind: InvVpidType, vpid: u16, addr: u64) -> Result<(), VmFail> {
    let desc: [u64; 2] = [vpid as u64, addr];
    let (cf, zf): (u8, u8);
    // SAFETY: as for INVEPT.
    unsafe {
        asm!("invvpid {}, [{}]", "setc {}", "setz {}", in(reg) kind as u64, in(reg) &desc,
             out(reg_byte) cf, out(reg_byte) zf, options(nostack))
    };
    check(cf, zf)
}

// The entry stub. `acrn_vmx_enter(regs, launched)` saves the host's callee-saved registers,
// points HOST_RSP/HOST_RIP at itself, loads the guest GPRs and runs VMLAUNCH (launched == 0) or
// VMRESUME. A VM exit lands on `acrn_vmx_exit` with RSP = HOST_RSP, which stores the guest GPRs
// back and returns 0. A failed entry falls through and returns 1 (VMfailInvalid) or 2
// (VMfailValid). MOVs do not touch the flags, so the `launched` test survives the GPR loads.
global_asm!(
    ".pushsection .text.vmx_enter, \"ax\"",
    ".global acrn_vmx_enter",
    "acrn_vmx_enter:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov rax, {host_rsp}",
    "vmwrite rax, rsp",
    "lea rdx, [rip + acrn_vmx_exit]",
    "mov rax, {host_rip}",
    "vmwrite rax, rdx",
    "test esi, esi",
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rsi, [rdi + 32]",
    "mov rbp, [rdi + 48]",
    "mov r8, [rdi + 56]",
    "mov r9, [rdi + 64]",
    "mov r10, [rdi + 72]",
    "mov r11, [rdi + 80]",
    "mov r12, [rdi + 88]",
    "mov r13, [rdi + 96]",
    "mov r14, [rdi + 104]",
    "mov r15, [rdi + 112]",
    "mov rdi, [rdi + 40]",
    "jnz 2f",
    // Host IF is set for the entry only (the STI shadow covers it; VM exit clears IF again):
    // an emulator that recomputes interrupt masking only when IF changes (Bochs) must see the
    // change to the guest's IF, or an external interrupt would not exit a guest with IF=0.
    "sti",
    "vmlaunch",
    "jmp 3f",
    "2:",
    "sti",
    "vmresume",
    "3:",
    "cli",
    "mov eax, 1",
    "mov ecx, 2",
    "cmovz eax, ecx",
    "pop rdi",
    "jmp 4f",
    "acrn_vmx_exit:",
    "push rdi",
    "mov rdi, [rsp + 8]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rbx",
    "mov [rdi + 16], rcx",
    "mov [rdi + 24], rdx",
    "mov [rdi + 32], rsi",
    "mov [rdi + 48], rbp",
    "mov [rdi + 56], r8",
    "mov [rdi + 64], r9",
    "mov [rdi + 72], r10",
    "mov [rdi + 80], r11",
    "mov [rdi + 88], r12",
    "mov [rdi + 96], r13",
    "mov [rdi + 104], r14",
    "mov [rdi + 112], r15",
    "pop rax",
    "mov [rdi + 40], rax",
    "pop rdi",
    "xor eax, eax",
    "4:",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
    host_rsp = const super::fields::STUB_HOST_RSP,
    host_rip = const super::fields::STUB_HOST_RIP,
);

extern "C" {
    fn acrn_vmx_enter(regs: *mut GuestRegs, launched: u32) -> u32;
}

/// Outcome of one entry attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnterResult {
    Exited,
    Failed(VmFail),
}

/// Enters the guest of the current VMCS with `regs` and returns at the next VM exit.
///
/// # Safety
/// The current VMCS is fully initialised (host state of this CPU, guest state, controls).
pub unsafe fn enter(regs: &mut GuestRegs, launched: bool) -> EnterResult {
    // SAFETY: the stub preserves the SysV callee-saved registers and the stack; the VMCS host
    // state returns control to it with RFLAGS = 2 (DF clear).
    match unsafe { acrn_vmx_enter(regs, launched as u32) } {
        0 => EnterResult::Exited,
        1 => EnterResult::Failed(VmFail::Invalid),
        _ => EnterResult::Failed(VmFail::Valid(
            vmread(super::fields::VM_INSTRUCTION_ERROR).unwrap_or(0) as u32,
        )),
    }
}

/// The current segment selectors: (CS, SS, DS, ES, FS, GS, TR).
pub fn selectors() -> [u16; 7] {
    let tr: u16;
    // SAFETY: STR only reads the task register. (The `x86_64` crate has no STR wrapper.)
    unsafe { asm!("str {:x}", out(reg) tr, options(nostack, nomem, preserves_flags)) };
    [
        CS::get_reg().0,
        SS::get_reg().0,
        DS::get_reg().0,
        ES::get_reg().0,
        FS::get_reg().0,
        GS::get_reg().0,
        tr,
    ]
}
