/* Throw-away multiboot1 test guest (KERNEL_ELF): prints its boot information on COM1, starts
 * its second vCPU with INIT/SIPI through the xAPIC, then halts. Built with --defsym BAD=1 it
 * finally writes outside its memory, with --defsym TRIPLE=1 it triple-faults (containment tests). */
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x3

.section .ap, "ax"
.code16
ap_entry:                       /* runs at 0x8000 after SIPI vector 0x08 */
    cli
    xor %ax, %ax
    mov %ax, %ds
    movl $1, 0x9000
1:  hlt
    jmp 1b
.align 4
mb_header:
    .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

.text
.code32
.global _start
_start:
    mov $stack_top, %esp
    mov %eax, %edi
    mov $msg_hello, %esi
    call puts
    mov 16(%ebx), %esi          /* mbi->cmdline */
    call puts
    call nl
    mov $msg_magic, %esi
    call puts
    mov %edi, %eax
    call puthex
    call nl
    mov $msg_mem, %esi
    call puts
    mov 8(%ebx), %eax           /* mem_upper (KiB) */
    call puthex
    call nl
    /* INIT then SIPI (vector 0x08, page 0x8000) to APIC ID 1 */
    movl $0x01000000, 0xFEE00310
    movl $0x00004500, 0xFEE00300
    movl $0x01000000, 0xFEE00310
    movl $0x00004608, 0xFEE00300
    mov $100000000, %ecx
2:  cmpl $1, 0x9000
    je 3f
    loop 2b
    mov $msg_noap, %esi
    call puts
    jmp 4f
3:  mov $msg_ap, %esi
    call puts
4:
    mov 0xFEE00020, %eax        /* own APIC ID */
    mov $msg_id, %esi
    call puts
    call puthex
    call nl
    /* String I/O: a whole line by REP OUTSB, then the UART's LSR by INSB (THR empty: bit 5). */
    mov $msg_rep, %esi
    mov $msg_rep_end - msg_rep, %ecx
    mov $0x3f8, %dx
    cld
    rep outsb
    mov $0x3fd, %dx
    mov $lsr_byte, %edi
    insb
    testb $0x20, lsr_byte
    jz 6f
    mov $msg_ins, %esi
    call puts
6:
.ifdef BAD
    mov $msg_bad, %esi
    call puts
    movl $0xdead, 0x40000000
.endif
.ifdef TRIPLE
    mov $msg_triple, %esi
    call puts
    lidt null_idt
    int $3
.endif
    mov $msg_done, %esi
    call puts
5:  cli
    hlt
    jmp 5b

puts:
    push %eax
    push %edx
    mov $0x3f8, %dx
1:  lodsb
    test %al, %al
    jz 2f
    out %al, %dx
    jmp 1b
2:  pop %edx
    pop %eax
    ret
nl:
    push %eax
    push %edx
    mov $0x3f8, %dx
    mov $'\n', %al
    out %al, %dx
    pop %edx
    pop %eax
    ret
puthex:                         /* eax */
    push %ecx
    push %edx
    push %ebx
    mov %eax, %ebx
    mov $8, %ecx
    mov $0x3f8, %dx
1:  rol $4, %ebx
    mov %bl, %al
    and $0xf, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $7, %al
2:  out %al, %dx
    loop 1b
    pop %ebx
    pop %edx
    pop %ecx
    ret

.data
msg_hello: .asciz "guest up, cmdline: "
msg_magic: .asciz "multiboot magic 0x"
msg_mem:   .asciz "mem_upper KiB 0x"
msg_ap:    .asciz "AP started\n"
msg_noap:  .asciz "AP did not start\n"
msg_id:    .asciz "BSP APIC ID 0x"
msg_bad:   .asciz "writing outside my memory\n"
msg_done:  .asciz "guest done\n"
msg_triple: .asciz "triple faulting\n"
msg_rep:   .ascii "rep outsb line\n"
msg_rep_end:
msg_ins:   .asciz "insb read LSR\n"
lsr_byte:  .byte 0
null_idt:  .word 0
           .long 0
.bss
.align 16
    .skip 4096
stack_top:
