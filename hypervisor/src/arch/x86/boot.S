/* Entry points of the hypervisor image. Every block is wrapped in .pushsection/.popsection so
 * no later global_asm! inherits a section from here. */

/* ---- Multiboot2 header (GRUB): first in the file, 8-byte aligned ---- */
.pushsection .boot.header, "a"
.balign 8
mb2_header_start:
    .long 0xE85250D6
    .long 0                                   /* i386 protected mode */
    .long mb2_header_end - mb2_header_start
    .long 0x100000000 - (0xE85250D6 + (mb2_header_end - mb2_header_start))
    .short 0, 0                               /* end tag */
    .long 8
mb2_header_end:
.popsection

/* ---- PVH ELF note (QEMU -kernel): XEN_ELFNOTE_PHYS32_ENTRY, an 8-byte descriptor ---- */
.pushsection .note.pvh, "a", @note
.balign 4
    .long 4                                   /* namesz: "Xen\0" */
    .long 8                                   /* descsz */
    .long 18                                  /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
.balign 4
    .quad hv_start32
.balign 4
.popsection

/* ---- 32-bit entry, shared by PVH and multiboot2: paging off, EAX = magic (MB2) or 0 (PVH),
 * EBX = boot information. Zero .bss, identity-map 0..4 GiB with 2 MiB pages, enter long mode. */
.pushsection .boot.text, "ax"
.code32
.global hv_start32
hv_start32:
    cli
    cld
    mov %eax, %ebp
    lea __bss_start, %edi
    lea __bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    lea boot_pd, %edi
    mov $0x83, %eax                           /* P | RW | PS */
    mov $2048, %ecx
1:  mov %eax, (%edi)
    movl $0, 4(%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 1b

    lea boot_pdpt, %edi
    lea boot_pd, %eax
    or $0x3, %eax
    mov $4, %ecx
2:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 2b

    lea boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4

    mov %cr4, %eax
    or $0x20, %eax                            /* PAE */
    mov %eax, %cr4
    lea boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax                           /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010021, %eax                      /* PG | WP | NE | PE */
    mov %eax, %cr0
    lgdt boot_gdtr
    ljmp $0x08, $boot_start64

.code64
boot_start64:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    movabs $boot_stack_top, %rsp
    mov %ebp, %edi                            /* zero-extends: magic */
    mov %ebx, %esi                            /* boot information */
    call hv_bsp_main
3:  cli
    hlt
    jmp 3b

.balign 8
boot_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF                  /* 0x08: 64-bit code */
    .quad 0x00CF93000000FFFF                  /* 0x10: data */
boot_gdtr:
    .short boot_gdtr - boot_gdt - 1
    .long boot_gdt
.popsection

/* ---- Application processor trampoline. Copied below 1 MiB at run time (AP_TRAMPOLINE in
 * cpu.rs); the words at offsets 8/16/24 are patched with CR3, the stack top and the 64-bit entry.
 * Everything is addressed relative to the copy, whose base is TRAMP. */
.set TRAMP, 0x8000
.pushsection .rodata.ap_trampoline, "a"
.balign 16
.global ap_trampoline_start
.global ap_trampoline_end
.code16
ap_trampoline_start:
    jmp tramp_code
.balign 8
tramp_cr3:   .quad 0
tramp_stack: .quad 0
tramp_entry: .quad 0
tramp_code:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    lgdtl (tramp_gdtr - ap_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(TRAMP + tramp_pm - ap_trampoline_start)
.code32
tramp_pm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax
    mov %eax, %cr4
    mov (TRAMP + tramp_cr3 - ap_trampoline_start), %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80010021, %eax
    mov %eax, %cr0
    ljmp $0x18, $(TRAMP + tramp_lm - ap_trampoline_start)
.code64
tramp_lm:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov (TRAMP + tramp_stack - ap_trampoline_start), %rsp
    mov (TRAMP + tramp_entry - ap_trampoline_start), %rax
    jmp *%rax
.balign 8
tramp_gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF                  /* 0x08: 32-bit code */
    .quad 0x00CF93000000FFFF                  /* 0x10: data */
    .quad 0x00AF9B000000FFFF                  /* 0x18: 64-bit code */
tramp_gdtr:
    .short 31
    .long TRAMP + tramp_gdt - ap_trampoline_start
ap_trampoline_end:
.popsection

.pushsection .text.ap_start64, "ax"
.code64
.global ap_start64
ap_start64:
    and $-16, %rsp
    call hv_ap_main
4:  cli
    hlt
    jmp 4b
.popsection

/* ---- Exception entry: push a dummy error code where the CPU pushes none, then the vector. */
.macro EXC_NOERR n
.pushsection .text.exceptions, "ax"
exc_\n:
    push $0
    push $\n
    jmp exc_common
.popsection
.pushsection .rodata.exc_table, "a"
    .quad exc_\n
.popsection
.endm
.macro EXC_ERR n
.pushsection .text.exceptions, "ax"
exc_\n:
    push $\n
    jmp exc_common
.popsection
.pushsection .rodata.exc_table, "a"
    .quad exc_\n
.popsection
.endm

.pushsection .rodata.exc_table, "a"
.balign 8
.global exc_table
exc_table:
.popsection
EXC_NOERR 0
EXC_NOERR 1
EXC_NOERR 2
EXC_NOERR 3
EXC_NOERR 4
EXC_NOERR 5
EXC_NOERR 6
EXC_NOERR 7
EXC_ERR 8
EXC_NOERR 9
EXC_ERR 10
EXC_ERR 11
EXC_ERR 12
EXC_ERR 13
EXC_ERR 14
EXC_NOERR 15
EXC_NOERR 16
EXC_ERR 17
EXC_NOERR 18
EXC_NOERR 19
EXC_NOERR 20
EXC_ERR 21
EXC_NOERR 22
EXC_NOERR 23
EXC_NOERR 24
EXC_NOERR 25
EXC_NOERR 26
EXC_NOERR 27
EXC_NOERR 28
EXC_ERR 29
EXC_ERR 30
EXC_NOERR 31

.pushsection .text.exceptions, "ax"
exc_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %rdi
    and $-16, %rsp
    call hv_exception
5:  cli
    hlt
    jmp 5b
.popsection

/* ---- External interrupts (vectors 32-255): one 16-byte stub each, pushing its vector; the
   handler records the event for the pCPU loop and signals EOI. */
.pushsection .text.irq, "ax"
.balign 16
.global irq_stubs
irq_stubs:
.set irqvec, 32
.rept 224
.balign 16
    push $irqvec
    jmp irq_common
.set irqvec, irqvec + 1
.endr

irq_common:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov 72(%rsp), %rdi
    sub $8, %rsp
    call hv_interrupt
    add $8, %rsp
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    add $8, %rsp
    iretq
.popsection

/* NMI (on IST1): kicks of pCPUs whose local APIC a guest owns, and that guest's own NMIs;
   the handler only records which, so it may interrupt anything. */
.pushsection .text.irq, "ax"
.global nmi_entry
nmi_entry:
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    mov %rsp, %rax
    and $-16, %rsp
    push %rax
    sub $8, %rsp
    cld
    call hv_nmi
    add $8, %rsp
    pop %rsp
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    iretq
.popsection

/* Boot page tables and the BSP stack. */
.pushsection .bss.boot, "aw", @nobits
.balign 4096
.global boot_pml4
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4
.balign 16
boot_stack: .skip 65536
boot_stack_top:
.popsection
