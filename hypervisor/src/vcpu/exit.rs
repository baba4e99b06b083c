//! The one exit dispatcher. Every VM's exits come here as [`VmExit`]s; the load order only
//! changes who serves an access nobody in the hypervisor claims (the Service VM's device model
//! for post-launched VMs, all-ones reads for the others) and who may make hypercalls.

use super::decode::{self, AluSrc, CpuMode, Op};
use super::run::{IoFinish, PendingIo, RunState, Thread};
use super::string_io;
use super::{cpuid, msr, Injection, IoDirection, Vcpu, VmExit, VECTOR_GP, VECTOR_UD};
use crate::arch::x86::irq;
use crate::devices::lapic::APIC_BASE_ADDRESS as LAPIC_GPA;
use crate::devices::Space;
use crate::hvlog;
use crate::hypercall::Outcome;
use crate::ioreq::{self, mask, Access};
use crate::vm::memory::GuestLinear;
use crate::vm::{ExitKind, Vm};
use acrn_static_config::LoadOrder;
use x86_64::registers::control::Cr0Flags;
use x86_64::registers::control::Cr4Flags;
use x86_64::registers::model_specific::EferFlags;
use x86_64::registers::rflags::RFlags;
use x86_64::structures::gdt::DescriptorFlags;

/// What the run loop does after an exit.
pub enum Next {
    /// Enter the guest again.
    Continue,
    /// Back to the pCPU loop: the vCPU blocked, its VM stopped, or the hypervisor has an
    /// interrupt to act on.
    Leave,
}

pub fn cpu_mode(v: &dyn Vcpu) -> CpuMode {
    let (cr0, _, _, efer) = v.paging_state();
    let cs = v.code_segment();
    // Segment access rights are the descriptor's bits 55:40.
    let cs_flags = DescriptorFlags::from_bits_retain((cs.access as u64) << 40);
    if EferFlags::from_bits_retain(efer).contains(EferFlags::LONG_MODE_ACTIVE)
        && cs_flags.contains(DescriptorFlags::LONG_MODE)
    {
        CpuMode::Long64
    } else if !Cr0Flags::from_bits_retain(cr0).contains(Cr0Flags::PROTECTED_MODE_ENABLE) {
        CpuMode::Real16
    } else if cs_flags.contains(DescriptorFlags::DEFAULT_SIZE) {
        CpuMode::Prot32
    } else {
        CpuMode::Prot16
    }
}

/// Up to 15 bytes at the guest's RIP (fewer where its mapping ends) and how many were read.
pub(super) fn fetch(vm: &Vm, v: &dyn Vcpu) -> ([u8; 15], usize) {
    let mode = cpu_mode(v);
    let la = match mode {
        CpuMode::Long64 => v.rip(),
        _ => v.code_segment().base.wrapping_add(v.rip()) & 0xFFFF_FFFF,
    };
    let lin = GuestLinear {
        mem: vm.memory(),
        paging: v.paging_state(),
    };
    let mut bytes = [0u8; 15];
    let n = lin.read_prefix(la, &mut bytes);
    (bytes, n)
}

fn fetch_decode(vm: &Vm, v: &dyn Vcpu) -> Option<decode::Insn> {
    let (bytes, n) = fetch(vm, v);
    decode::decode(&bytes[..n], cpu_mode(v)).ok()
}

/// Length of the instruction that exited: from the CPU if it reports it, else decoded.
fn insn_len(vm: &Vm, v: &dyn Vcpu) -> Option<u8> {
    v.exit_instruction_len()
        .or_else(|| fetch_decode(vm, v).map(|i| i.len))
}

/// Skips the instruction that exited; stops the VM if its length cannot be known.
fn skip(t: &mut Thread, what: &str) -> Next {
    match insn_len(t.vm, t.hw.get_ref()) {
        Some(l) => {
            t.hw.get().advance_rip(l);
            Next::Continue
        }
        None => stop(
            t,
            format_args!("cannot decode {what} at RIP {:#x}", t.hw.get_ref().rip()),
        ),
    }
}

fn stop(t: &Thread, why: core::fmt::Arguments) -> Next {
    t.vm.stop(format_args!("vCPU {}: {why}", t.idx));
    Next::Leave
}

/// A hypercall instruction: dispatched, RAX set and the instruction skipped (`len` when the
/// exit does not report it: a #UD intercept), or #UD / #GP(0) for a caller that may not call.
fn hypercall(t: &mut Thread, len: Option<u8>) -> Next {
    let cpl = (t.hw.get_ref().code_segment().selector & 3) as u8;
    let r = *t.hw.get_ref().regs();
    match crate::hypercall::runtime::handle(t.vm.id, cpl, r.r8, r.rdi, r.rsi) {
        Outcome::Return(ret) => {
            t.hw.get().regs_mut().rax = ret as u64;
            match len {
                Some(l) => {
                    t.hw.get().advance_rip(l);
                    Next::Continue
                }
                None => skip(t, "the hypercall instruction"),
            }
        }
        Outcome::InjectUd => {
            t.hw.get().inject(Injection::Exception {
                vector: VECTOR_UD,
                error_code: None,
            });
            Next::Continue
        }
        Outcome::InjectGp => inject_gp(t),
    }
}

fn inject_gp(t: &mut Thread) -> Next {
    t.hw.get().inject(Injection::Exception {
        vector: VECTOR_GP,
        error_code: Some(0),
    });
    Next::Continue
}

fn is_post_launched(vm: &Vm) -> bool {
    vm.load_order() == Some(LoadOrder::PostLaunched)
}

fn kind(exit: &VmExit) -> ExitKind {
    match exit {
        VmExit::Io { .. } | VmExit::IoString { .. } => ExitKind::PortIo,
        VmExit::Mmio { gpa, .. } if gpa & !0xFFF == LAPIC_GPA => ExitKind::LocalApic,
        VmExit::Mmio { .. } => ExitKind::Mmio,
        VmExit::MsrRead { .. } | VmExit::MsrWrite { .. } => ExitKind::Msr,
        VmExit::Cpuid { .. } => ExitKind::Cpuid,
        VmExit::Hypercall => ExitKind::Hypercall,
        VmExit::Halt => ExitKind::Halt,
        VmExit::ExternalInterrupt | VmExit::InterruptWindow => ExitKind::Interrupt,
        _ => ExitKind::Other,
    }
}

pub fn handle(t: &mut Thread, exit: VmExit) -> Next {
    t.vm.count_exit(kind(&exit));
    match exit {
        VmExit::Io {
            port,
            size,
            dir,
            data,
        } => port_io(t, port, size, dir, data),
        VmExit::IoString {
            port,
            size,
            dir,
            rep,
        } => string_port_io(t, port, size, dir, rep),
        VmExit::Cpuid { leaf, subleaf } => {
            let vm = t.vm;
            let (_, _, cr4, _) = t.hw.get_ref().paging_state();
            let r = cpuid::emulate(
                &cpuid::Asker {
                    ncpu: vm.vcpu_count() as u32,
                    privileged: vm.load_order() == Some(LoadOrder::Service),
                    idx: t.idx,
                    osxsave: Cr4Flags::from_bits_retain(cr4).contains(Cr4Flags::OSXSAVE),
                    xcr0: crate::vcpu::context::current_xcr0(),
                    tsc_khz: crate::tsc::khz(),
                },
                leaf,
                subleaf,
            );
            let g = t.hw.get().regs_mut();
            (g.rax, g.rbx, g.rcx, g.rdx) = (r[0] as u64, r[1] as u64, r[2] as u64, r[3] as u64);
            skip(t, "CPUID")
        }
        VmExit::MsrRead { msr } => {
            let value = if msr::is_lapic(msr) {
                t.lapic.msr_read(msr, crate::tsc::now()).ok()
            } else {
                msr::read(t.idx, msr)
            };
            match value {
                Some(val) => {
                    let g = t.hw.get().regs_mut();
                    g.rax = val & 0xFFFF_FFFF;
                    g.rdx = val >> 32;
                    skip(t, "RDMSR")
                }
                None => inject_gp(t),
            }
        }
        VmExit::MsrWrite { msr, value } => {
            if t.lapic_pt && msr == msr::lapic_pt::MSR_X2APIC_ICR {
                lapic_pt_icr(t, value)
            } else if msr::is_lapic(msr) {
                match t.lapic.msr_write(msr, value, crate::tsc::now()) {
                    Ok(effect) => {
                        let rearm = t.lapic_effect(effect);
                        match skip(t, "WRMSR") {
                            Next::Continue if rearm => Next::Leave,
                            next => next,
                        }
                    }
                    Err(_) => inject_gp(t),
                }
            } else if msr::write_ok(msr, value) {
                skip(t, "WRMSR")
            } else {
                inject_gp(t)
            }
        }
        VmExit::Hypercall => hypercall(t, None),
        // #UD is intercepted for the hypercall instruction of the other vendor (VMCALL on AMD,
        // VMMCALL on Intel); any other #UD goes back to the guest.
        VmExit::Exception {
            vector: VECTOR_UD,
            error_code: None,
        } => {
            let (bytes, n) = fetch(t.vm, t.hw.get_ref());
            if decode::is_hypercall(&bytes[..n]) {
                hypercall(t, Some(3))
            } else {
                t.hw.get().inject(Injection::Exception {
                    vector: VECTOR_UD,
                    error_code: None,
                });
                Next::Continue
            }
        }
        VmExit::Halt => {
            if let Next::Leave = skip(t, "HLT") {
                return Next::Leave;
            }
            if RFlags::from_bits_retain(t.hw.get_ref().rflags()).contains(RFlags::INTERRUPT_FLAG) {
                t.state = RunState::Halted;
            } else {
                hvlog!(
                    "VM {} {}: vCPU {} halted with interrupts disabled",
                    t.vm.id,
                    t.vm.name(),
                    t.idx
                );
                t.state = RunState::HaltedNoInterrupts;
                t.vm.set_parked(t.idx, true);
            }
            Next::Leave
        }
        VmExit::Shutdown => {
            let rip = t.hw.get_ref().rip();
            stop(t, format_args!("triple fault (shutdown) at RIP {rip:#x}"))
        }
        VmExit::Mmio { gpa, access } => mmio(t, gpa, access),
        VmExit::ExternalInterrupt => {
            irq::take_pending();
            Next::Leave
        }
        VmExit::Init | VmExit::Sipi { .. } | VmExit::InterruptWindow => Next::Continue,
        VmExit::Exception { vector, error_code } => {
            let rip = t.hw.get_ref().rip();
            stop(
                t,
                format_args!("exception {vector} (error {error_code:?}) at RIP {rip:#x}"),
            )
        }
        VmExit::CrAccess { cr, write } => stop(
            t,
            format_args!(
                "CR{cr} {} not handled",
                if write { "write" } else { "read" }
            ),
        ),
        VmExit::Unhandled {
            raw_reason,
            qualification,
        } => {
            let rip = t.hw.get_ref().rip();
            stop(
                t,
                format_args!(
                    "unhandled exit {raw_reason:#x} (qualification {qualification:#x}) at RIP {rip:#x}"
                ),
            )
        }
        VmExit::EntryFailure { raw_reason } => stop(
            t,
            format_args!("VM entry failed (invalid guest state, reason {raw_reason:#x})"),
        ),
    }
}

/// An ICR write of a vCPU that owns its pCPU's local APIC, filtered as ACRN does: physical
/// destinations of its own VM only, translated from virtual APIC IDs to the physical x2APIC
/// IDs of their pCPUs; INIT and SIPI emulated; anything else #GP. No other pCPU can be reached.
fn lapic_pt_icr(t: &mut Thread, value: u64) -> Next {
    use msr::lapic_pt::{decode_icr, PtIpi};
    let vm = t.vm;
    match decode_icr(value, vm.vcpu_count()) {
        Err(e) => {
            t.refused_icrs += 1;
            if t.refused_icrs == 1 {
                hvlog!(
                    "VM {} {}: vCPU {}: ICR write {value:#x} refused ({e:?}); #GP (reported once)",
                    vm.id,
                    vm.name(),
                    t.idx
                );
            }
            inject_gp(t)
        }
        Ok(PtIpi::Physical { vcpu, low }) => {
            let target = vm.vcpus[vcpu].pcpu();
            let nmi = (low >> 8) & 7 == 4;
            if vcpu == t.idx && nmi {
                t.nmi = true;
            } else if let Some(apic_id) = target
                .filter(|&p| irq::passed_through_on(p))
                .and_then(|p| crate::hv::platform().board.pcpus.get(p))
                .map(|c| c.apic_id)
            {
                crate::arch::x86::lapic::send_raw_x2apic((apic_id as u64) << 32 | low as u64);
            } else {
                // That vCPU has its virtual local APIC still (it has not switched to x2APIC).
                virtual_icr(t, value);
            }
            skip(t, "WRMSR")
        }
        Ok(PtIpi::Virtual { .. }) => {
            virtual_icr(t, value);
            skip(t, "WRMSR")
        }
    }
}

/// Sends an ICR value through the vCPU's virtual local APIC (to its own VM only).
fn virtual_icr(t: &mut Thread, value: u64) {
    if let Ok(effect) = t
        .lapic
        .msr_write(msr::lapic_pt::MSR_X2APIC_ICR, value, crate::tsc::now())
    {
        t.lapic_effect(effect);
    }
}

fn port_io(t: &mut Thread, port: u16, size: u8, dir: IoDirection, data: u32) -> Next {
    let Some(len) = insn_len(t.vm, t.hw.get_ref()) else {
        let rip = t.hw.get_ref().rip();
        return stop(
            t,
            format_args!("cannot decode the port I/O instruction at RIP {rip:#x}"),
        );
    };
    let vm = t.vm;
    let write = dir == IoDirection::Out;
    let value = if write { Some(data as u64) } else { None };
    // Only the vRTC has a timer of its own among the port devices.
    let rtc = matches!(port, 0x70 | 0x71);
    let timer_before = rtc.then(|| vm.devices.next_event(crate::tsc::now()));
    match vm.devices.access(vm, Space::Port, port as u64, size, value) {
        Some(read) => {
            if !write {
                let r = t.hw.get().regs_mut();
                r.rax = ioreq::merge_pio_read(r.rax, size, read);
            }
            t.hw.get().advance_rip(len);
            // A device timer (the vRTC's) started or moved: the pCPU loop re-arms its timer.
            if rtc && Some(vm.devices.next_event(crate::tsc::now())) != timer_before {
                return Next::Leave;
            }
            Next::Continue
        }
        None if is_post_launched(vm) => {
            let access = Access::Pio {
                port,
                size,
                write,
                value: data,
            };
            forward(t, access, IoFinish::Pio { size, len })
        }
        None => {
            vm.devices.report_unclaimed(vm, Space::Port, port as u64);
            if !write {
                let r = t.hw.get().regs_mut();
                r.rax = ioreq::merge_pio_read(r.rax, size, u64::MAX);
            }
            t.hw.get().advance_rip(len);
            Next::Continue
        }
    }
}

/// INS/OUTS (REP included), emulated against the VM's devices; an access nobody claims
/// reads all-ones and drops writes (string I/O is not forwarded to the Service VM).
fn string_port_io(t: &mut Thread, port: u16, size: u8, dir: IoDirection, rep: bool) -> Next {
    let vm = t.vm;
    let v = t.hw.get();
    let mode = cpu_mode(v);
    let (bytes, n) = fetch(vm, v);
    let Some(pre) = string_io::scan_prefixes(&bytes[..n], mode) else {
        let rip = v.rip();
        return stop(
            t,
            format_args!("string I/O at RIP {rip:#x}: instruction not decodable"),
        );
    };
    let long_mode = mode == CpuMode::Long64;
    let seg_base = match pre.seg {
        // Long mode ignores the bases of ES, CS, SS and DS.
        string_io::SegReg::Fs | string_io::SegReg::Gs => v.segment_base(pre.seg),
        _ if long_mode => Some(0),
        s => v.segment_base(s),
    };
    let Some(seg_base) = seg_base else {
        return stop(t, format_args!("string I/O: segment base not available"));
    };
    let op = string_io::StringOp {
        size,
        dir,
        rep,
        addr_size: pre.addr_size,
        seg_base,
        df: RFlags::from_bits_retain(v.rflags()).contains(RFlags::DIRECTION_FLAG),
        long_mode,
    };
    let mut lin = GuestLinear {
        mem: vm.memory(),
        paging: v.paging_state(),
    };
    let result = string_io::execute(&op, v.regs_mut(), &mut lin, |d, data| {
        let value = (d == IoDirection::Out).then_some(data as u64);
        match vm.devices.access(vm, Space::Port, port as u64, size, value) {
            Some(read) => read as u32,
            None => {
                vm.devices.report_unclaimed(vm, Space::Port, port as u64);
                u32::MAX
            }
        }
    });
    match result {
        Ok(string_io::Outcome::Again) => Next::Continue,
        Ok(string_io::Outcome::Done) => skip(t, "the string I/O instruction"),
        Err(_) => stop(
            t,
            format_args!("string I/O on port {port:#x}: guest memory not mapped"),
        ),
    }
}

/// An access to guest-physical `gpa` that is not RAM of the VM: its local APIC, a device of
/// its bus, the Service VM's device model (post-launched VMs), or nothing (all-ones).
fn mmio(t: &mut Thread, gpa: u64, access: super::AccessKind) -> Next {
    let vm = t.vm;
    let Some(insn) = fetch_decode(vm, t.hw.get_ref()) else {
        let rip = t.hw.get_ref().rip();
        return stop(
            t,
            format_args!(
                "{access:?} access at GPA {gpa:#x} (RIP {rip:#x}) outside its memory: \
                 instruction not decodable"
            ),
        );
    };
    if gpa & !0xFFF == LAPIC_GPA {
        let now = crate::tsc::now();
        let off = gpa & 0xFFF;
        let mut effect = None;
        let mut failed = None;
        let ok = emulate_mmio(t.hw.get(), insn, |size, value| match value {
            None => match t.lapic.mmio_read(off, size, now) {
                Ok(v) => v as u64,
                Err(e) => {
                    failed = Some(e);
                    0
                }
            },
            Some(v) => {
                match t.lapic.mmio_write(off, size, v as u32, now) {
                    Ok(e) => effect = e,
                    Err(e) => failed = Some(e),
                }
                0
            }
        });
        if let Some(e) = failed {
            hvlog!(
                "VM {} {}: vCPU {}: {e}; access ignored",
                vm.id,
                vm.name(),
                t.idx
            );
        }
        let rearm = t.lapic_effect(effect);
        return if ok && rearm {
            // Back to the pCPU loop, which arms its timer for the new deadline.
            Next::Leave
        } else if ok {
            Next::Continue
        } else {
            stop(
                t,
                format_args!("local APIC access at GPA {gpa:#x}: instruction not emulated"),
            )
        };
    }
    let claimed = vm.devices.claims(vm, Space::Mmio, gpa);
    if !claimed && is_post_launched(vm) {
        let Some(a) = ioreq::mmio_access(insn.op, t.hw.get_ref().regs(), gpa) else {
            return stop(
                t,
                format_args!("MMIO at GPA {gpa:#x}: not a MOV to or from memory"),
            );
        };
        return forward(
            t,
            a,
            IoFinish::Mmio {
                op: insn.op,
                len: insn.len,
            },
        );
    }
    if !claimed {
        vm.devices.report_unclaimed(vm, Space::Mmio, gpa);
    }
    let ok = emulate_mmio(t.hw.get(), insn, |size, value| {
        vm.devices
            .access(vm, Space::Mmio, gpa, size, value)
            .unwrap_or(u64::MAX)
    });
    if ok {
        Next::Continue
    } else {
        let rip = t.hw.get_ref().rip();
        stop(
            t,
            format_args!(
                "{access:?} access at GPA {gpa:#x} (RIP {rip:#x}): instruction not emulated"
            ),
        )
    }
}

/// Emulates the memory operand of `insn` against a device: `dev(size, None)` reads,
/// `dev(size, Some(v))` writes. MOV, MOVZX, read-modify-write ALU forms and BT; RIP advances.
fn emulate_mmio(
    v: &mut dyn Vcpu,
    insn: decode::Insn,
    mut dev: impl FnMut(u8, Option<u64>) -> u64,
) -> bool {
    match insn.op {
        Op::StoreReg {
            size,
            reg,
            high_byte,
        } => {
            let Some(val) = v.regs().operand(reg, high_byte) else {
                return false;
            };
            dev(size, Some(val & mask(size)));
        }
        Op::StoreImm { size, imm } => {
            dev(size, Some(imm & mask(size)));
        }
        Op::Load { size, .. } => {
            let val = dev(size, None);
            if !ioreq::complete_mmio_read(insn.op, v.regs_mut(), val) {
                return false;
            }
        }
        Op::Alu { size, kind, src } => {
            let src = match src {
                AluSrc::Imm(imm) => imm,
                AluSrc::Reg { reg, high_byte } => match v.regs().operand(reg, high_byte) {
                    Some(x) => x,
                    None => return false,
                },
            };
            let old = dev(size, None);
            let (result, rflags) = decode::alu(kind, size, old, src, v.rflags());
            if kind.writes_back() {
                dev(size, Some(result & mask(size)));
            }
            v.set_rflags(rflags);
        }
        Op::BitTest { size, bit } => {
            let value = dev(size, None);
            let rflags = decode::bit_test(size, value, bit, v.rflags());
            v.set_rflags(rflags);
        }
        _ => return false,
    }
    v.advance_rip(insn.len);
    true
}

/// Hands the access to the Service VM's device model: the vCPU waits until its request is
/// complete ([`poll_io`]).
fn forward(t: &mut Thread, access: Access, finish: IoFinish) -> Next {
    t.io = Some(PendingIo {
        access,
        finish,
        posted: false,
    });
    t.state = RunState::WaitForIo;
    if poll_io(t) {
        t.state = RunState::Runnable;
        return Next::Continue;
    }
    Next::Leave
}

/// Moves the vCPU's I/O request on: posts it once its slot is free (with the upcall), and
/// once the Service VM completed it, finishes the instruction. True when finished.
pub fn poll_io(t: &mut Thread) -> bool {
    let Some(mut io) = t.io else {
        return true;
    };
    let vm = t.vm;
    let Some(slot) = ioreq::slot_ptr(vm.ioreq_page(), t.idx).filter(|_| vm.ioreq_page() != 0)
    else {
        vm.stop(format_args!(
            "vCPU {}: an I/O request but no I/O request page",
            t.idx
        ));
        return false;
    };
    if !io.posted {
        let polling = vm.polling.load(core::sync::atomic::Ordering::Relaxed);
        // SAFETY: the dispatcher checked the page is 4 KiB of Service VM RAM the hypervisor
        // maps 1:1; slots are 256-byte aligned inside it.
        if unsafe { ioreq::post(slot, &io.access, polling) }.is_err() {
            return false; // the Service VM still holds the previous request
        }
        io.posted = true;
        t.io = Some(io);
        crate::hypercall::runtime::upcall();
    }
    // SAFETY: as above; `io.access` is what was posted.
    let Some(value) = (unsafe { ioreq::take_completion(slot, &io.access) }) else {
        return false;
    };
    t.io = None;
    let v = t.hw.get();
    match io.finish {
        IoFinish::Pio { size, len } => {
            if io.access.is_read() {
                let r = v.regs_mut();
                r.rax = ioreq::merge_pio_read(r.rax, size, value);
            }
            v.advance_rip(len);
        }
        IoFinish::Mmio { op, len } => {
            if io.access.is_read() && !ioreq::complete_mmio_read(op, v.regs_mut(), value) {
                vm.stop(format_args!(
                    "vCPU {}: MMIO read into a register that cannot be written",
                    t.idx
                ));
                return false;
            }
            v.advance_rip(len);
        }
    }
    true
}
