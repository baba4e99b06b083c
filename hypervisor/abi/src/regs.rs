//! vCPU register state for `HC_SET_VCPU_REGS` / `ACRN_IOCTL_SET_VCPU_REGS`.

/// `struct acrn_gp_regs` (128 bytes), in VMX exit-qualification register order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AcrnGpRegs {
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rbx: u64,
    pub rsp: u64,
    pub rbp: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// `struct acrn_descriptor_ptr` (16 bytes, packed): a GDTR/IDTR value.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnDescriptorPtr {
    /// Table limit.
    pub limit: u16,
    /// Table base (guest linear address).
    pub base: u64,
    /// Must be 0.
    pub reserved: [u16; 3],
}

/// `struct acrn_regs` (288 bytes). The field order is ABI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnRegs {
    /// General-purpose registers.
    pub gprs: AcrnGpRegs,
    /// GDTR.
    pub gdt: AcrnDescriptorPtr,
    /// IDTR.
    pub idt: AcrnDescriptorPtr,
    /// RIP.
    pub rip: u64,
    /// CS base.
    pub cs_base: u64,
    /// CR0.
    pub cr0: u64,
    /// CR4.
    pub cr4: u64,
    /// CR3.
    pub cr3: u64,
    /// IA32_EFER.
    pub ia32_efer: u64,
    /// RFLAGS (0 means 0x2).
    pub rflags: u64,
    /// Must be 0.
    pub reserved_64: [u64; 4],
    /// CS access rights (VMX format).
    pub cs_ar: u32,
    /// CS limit.
    pub cs_limit: u32,
    /// Must be 0.
    pub reserved_32: [u32; 3],
    /// CS selector.
    pub cs_sel: u16,
    /// SS selector.
    pub ss_sel: u16,
    /// DS selector.
    pub ds_sel: u16,
    /// ES selector.
    pub es_sel: u16,
    /// FS selector.
    pub fs_sel: u16,
    /// GS selector.
    pub gs_sel: u16,
    /// LDTR selector.
    pub ldt_sel: u16,
    /// TR selector.
    pub tr_sel: u16,
}

/// `struct acrn_vcpu_regs` (296 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnVcpuRegs {
    /// vCPU index inside the VM.
    pub vcpu_id: u16,
    /// Must be 0.
    pub reserved: [u16; 3],
    /// The register state.
    pub vcpu_regs: AcrnRegs,
}

impl AcrnVcpuRegs {
    /// True when every field the ABI reserves is zero (the HSM rejects the call otherwise).
    pub fn reserved_fields_clear(&self) -> bool {
        let r = &self.vcpu_regs;
        let gdt_res = r.gdt.reserved;
        let idt_res = r.idt.reserved;
        self.reserved == [0; 3]
            && r.reserved_64 == [0; 4]
            && r.reserved_32 == [0; 3]
            && gdt_res == [0; 3]
            && idt_res == [0; 3]
    }
}
