/* 32-bit entry for the test guests (AT&T syntax, included with global_asm!).
 *
 * Entered in flat 32-bit protected mode with paging off, either by ACRN-style KERNEL_ELF
 * loading (EAX=0x2BADB002, EBX=multiboot info) or by QEMU's multiboot1 loader. Builds an
 * identity map of 0-4 GiB with 2 MiB pages, enters long mode and calls
 * kmain(magic: u32, info: u32). Application processors arrive through ap_tramp_start
 * (copied below 1 MiB by smp.rs), take the same path and call ap_main(index: u32).
 * Every block is wrapped in .pushsection/.popsection so nothing leaks into the next
 * global_asm! of the codegen unit. */

.set MB1_MAGIC,      0x1BADB002
.set MB1_FLAGS,      0x00010002     /* bit 1: memory info; bit 16: a.out kludge addresses */
.set BSP_STACK_SIZE, 0x10000
.set AP_STACK_SHIFT, 13             /* 8 KiB per AP */
.set MAX_CPUS,       16

.pushsection .boot.header, "a"
.balign 4
mb1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)
    .long mb1_header                /* header_addr */
    .long __image_start             /* load_addr */
    .long __load_end                /* load_end_addr */
    .long __bss_end                 /* bss_end_addr */
    .long _start                    /* entry_addr */
.popsection

.pushsection .boot.text, "ax"
.code32
.global _start
_start:
    cli
    cld
    /* Keep the hand-over registers in .data: BSS is about to be cleared. */
    movl %eax, boot_magic
    movl %ebx, boot_info

    /* Clear BSS ourselves; some loaders do not. */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    rep stosb

    /* PML4[0] -> PDPT; PDPT[0..4] -> the four page directories. */
    movl $boot_pdpt, %eax
    orl $3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $3, %eax
    xorl %ecx, %ecx
1:  movl %eax, boot_pdpt(,%ecx,8)
    addl $4096, %eax
    incl %ecx
    cmpl $4, %ecx
    jb 1b

    /* 2048 x 2 MiB identity pages (P|RW|PS); the top GiB (LAPIC, IOAPIC, PCI MMIO) is
     * mapped uncached (PCD|PWT). */
    xorl %ecx, %ecx
2:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    cmpl $1536, %ecx
    jb 3f
    orl $0x18, %eax
3:  movl %eax, boot_pd(,%ecx,8)
    incl %ecx
    cmpl $2048, %ecx
    jb 2b

    xorl %ebx, %ebx                 /* EBX = 0: bootstrap processor */
    /* fall through */

/* Shared by the BSP and the APs: EBX selects the 64-bit continuation. */
enter_long_mode:
    lgdt gdt64_ptr
    movl %cr4, %eax
    orl $0x20, %eax                 /* PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx          /* EFER */
    rdmsr
    orl $0x100, %eax                /* LME */
    wrmsr
    movl %cr0, %eax
    orl $0x80000031, %eax           /* PG | NE | ET | PE */
    movl %eax, %cr0
    ljmp $0x08, $start64

/* APs come here from the real-mode trampoline, already in protected mode. */
.global ap_entry32
ap_entry32:
    movw $0x18, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $1, %ebx
    jmp enter_long_mode

.code64
start64:
    movw $0x18, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    testl %ebx, %ebx
    jnz ap64

    leaq boot_stack_top(%rip), %rsp
    xorl %ebp, %ebp
    movl boot_magic(%rip), %edi     /* 32-bit moves zero-extend into RDI/RSI */
    movl boot_info(%rip), %esi
    call kmain
    jmp halt_forever

ap64:
    movl $1, %eax
    lock xaddl %eax, ap_next_index(%rip)
    cmpl $MAX_CPUS, %eax
    jae halt_forever
    movl %eax, %edi
    incl %eax
    shlq $AP_STACK_SHIFT, %rax
    leaq ap_stacks(%rip), %rsp
    addq %rax, %rsp
    xorl %ebp, %ebp
    call ap_main

.global halt_forever
halt_forever:
    cli
    hlt
    jmp halt_forever

/* Real-mode AP trampoline: copied to a page below 1 MiB, entered at CS=page>>4, IP=0.
 * Position independent: it only uses offsets from its own start plus absolute addresses
 * inside the image (the GDT and ap_entry32, both below 4 GiB). */
.code16
.global ap_tramp_start
ap_tramp_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_tramp_gdtr - ap_tramp_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x10, $ap_entry32
.balign 8
ap_tramp_gdtr:
    .word gdt64_end - gdt64 - 1
    .long gdt64
.global ap_tramp_end
ap_tramp_end:
.code64
.popsection

.pushsection .data.boot, "aw"
.balign 16
gdt64:
    .quad 0
    .quad 0x00AF9A000000FFFF        /* 0x08: 64-bit code */
    .quad 0x00CF9A000000FFFF        /* 0x10: 32-bit code (same selector as ACRN's) */
    .quad 0x00CF92000000FFFF        /* 0x18: flat data */
gdt64_end:
.balign 4
gdt64_ptr:
    .word gdt64_end - gdt64 - 1
    .long gdt64
boot_magic:
    .long 0
boot_info:
    .long 0
.global ap_next_index
ap_next_index:
    .long 1
.popsection

.pushsection .bss.boot, "aw", @nobits
.balign 4096
.global boot_pml4
boot_pml4:
    .skip 4096
.global boot_pdpt
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
.global spare_pd
spare_pd:
    .skip 4096
.balign 16
boot_stack:
    .skip BSP_STACK_SIZE
boot_stack_top:
ap_stacks:
    .skip (MAX_CPUS + 1) << AP_STACK_SHIFT
.popsection
