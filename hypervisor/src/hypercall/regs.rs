//! HC_SET_VCPU_REGS: ACRN's register structure to a vCPU start state (pure, host-tested).

use crate::vcpu::{GuestRegs, InitialState, Segment};
use acrn_abi::AcrnRegs;

/// RFLAGS bits ACRN clears from a `set_vcpu_regs` value (CF, PF, AF, ZF, SF, OF).
const RFLAGS_CLEARED: u64 = 0x8D5;

/// The start state of a vCPU from `HC_SET_VCPU_REGS`, as ACRN applies it (`set_vcpu_regs`):
/// data segments flat with base 0 (protected-mode or real-mode attributes by CR0.PE), CS from
/// the structure, GDTR/IDTR loaded, LDTR/TR with fixed attributes, RFLAGS 0 meaning 0x2.
pub fn initial_state_from_acrn(r: &AcrnRegs) -> InitialState {
    let pe = r.cr0 & 1 != 0;
    let data = |selector: u16| {
        if pe {
            Segment {
                selector,
                base: 0,
                limit: 0xFFFF_FFFF,
                access: 0xC093,
            }
        } else {
            Segment {
                selector,
                base: 0,
                limit: 0xFFFF,
                access: 0x93,
            }
        }
    };
    let g = &r.gprs;
    let (gdt_base, gdt_limit) = (r.gdt.base, r.gdt.limit);
    let (idt_base, idt_limit) = (r.idt.base, r.idt.limit);
    InitialState {
        regs: GuestRegs {
            rax: g.rax,
            rbx: g.rbx,
            rcx: g.rcx,
            rdx: g.rdx,
            rsi: g.rsi,
            rdi: g.rdi,
            rbp: g.rbp,
            r8: g.r8,
            r9: g.r9,
            r10: g.r10,
            r11: g.r11,
            r12: g.r12,
            r13: g.r13,
            r14: g.r14,
            r15: g.r15,
        },
        rip: r.rip,
        rsp: g.rsp,
        rflags: if r.rflags == 0 {
            2
        } else {
            (r.rflags & !RFLAGS_CLEARED) | 2
        },
        cr0: r.cr0,
        cr3: r.cr3,
        cr4: r.cr4,
        efer: r.ia32_efer,
        cs: Segment {
            selector: r.cs_sel,
            base: r.cs_base,
            limit: r.cs_limit,
            access: r.cs_ar,
        },
        ds: data(r.ds_sel),
        es: data(r.es_sel),
        ss: data(r.ss_sel),
        fs: data(r.fs_sel),
        gs: data(r.gs_sel),
        tr: Segment {
            selector: r.tr_sel,
            base: 0,
            limit: 0xFFFF,
            access: 0x8B,
        },
        ldtr: Segment {
            selector: r.ldt_sel,
            base: 0,
            limit: 0xFFFF,
            access: 0x82,
        },
        gdtr_base: gdt_base,
        gdtr_limit: gdt_limit as u32,
        idtr_base: idt_base,
        idtr_limit: idt_limit as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_mode_bsp_like_the_reference_service_vm_sets_it() {
        let mut r = AcrnRegs::default();
        r.gdt.limit = 31;
        r.gdt.base = 0x800;
        r.rip = 0x10_0020;
        r.cr0 = 0x31;
        r.rflags = 0x2;
        r.cs_sel = 0x10;
        r.cs_ar = 0xC09B;
        r.cs_limit = 0xFFFF_FFFF;
        r.ss_sel = 0x18;
        r.ds_sel = 0x18;
        r.gprs.rax = 0x2BAD_B002;
        r.gprs.rbx = 0x1000;
        r.gprs.rsp = 0x7000;
        let s = initial_state_from_acrn(&r);
        assert_eq!(
            (s.rip, s.rsp, s.cr0, s.rflags),
            (0x10_0020, 0x7000, 0x31, 2)
        );
        assert_eq!((s.regs.rax, s.regs.rbx), (0x2BAD_B002, 0x1000));
        assert_eq!(
            (s.cs.selector, s.cs.access, s.cs.limit),
            (0x10, 0xC09B, 0xFFFF_FFFF)
        );
        assert_eq!(
            (s.ds.selector, s.ds.access, s.ds.limit),
            (0x18, 0xC093, 0xFFFF_FFFF)
        );
        assert_eq!((s.ss.selector, s.ss.access), (0x18, 0xC093));
        assert_eq!((s.gdtr_base, s.gdtr_limit), (0x800, 31));
        assert_eq!((s.tr.access, s.ldtr.access), (0x8B, 0x82));
    }

    #[test]
    fn real_mode_segments_and_rflags_rules() {
        let mut r = AcrnRegs {
            cr0: 0x30,
            cs_sel: 0xF000,
            cs_base: 0xFFFF_0000,
            cs_ar: 0x9F,
            cs_limit: 0xFFFF,
            rip: 0xFFF0,
            ..AcrnRegs::default()
        };
        let s = initial_state_from_acrn(&r);
        assert_eq!(s.rflags, 2, "0 means 0x2");
        assert_eq!((s.ds.limit, s.ds.access), (0xFFFF, 0x93));
        assert_eq!((s.cs.base, s.cs.access), (0xFFFF_0000, 0x9F));
        r.rflags = 0x8D5 | 0x200;
        assert_eq!(
            initial_state_from_acrn(&r).rflags,
            0x202,
            "arithmetic flags cleared"
        );
    }
}
