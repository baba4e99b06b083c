#!/usr/bin/env bash
# Boot tests of the hypervisor in QEMU TCG with the throw-away guest of this folder:
# two VMs side by side (PVH and GRUB/multiboot2), and containment (a VM that writes outside its
# memory reaches no device and no one's memory, and is reported once; a VM that triple-faults
# stops alone; the other VM finishes either way).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
hv=$(dirname "$here")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for v in good:"" bad:"--defsym BAD=1" triple:"--defsym TRIPLE=1"; do
    name=${v%%:*}; flags=${v#*:}
    as --32 $flags -o "$out/$name.o" "$here/guest.S" && ld -m elf_i386 -N -T "$here/guest.ld" -o "$out/$name.elf" "$out/$name.o" 2>/dev/null || exit 1
done
fail=0
# run NAME TIMEOUT [--iso] TAG=FILE... -- EXPECTED-LINE...
run() {
    local name=$1 t=$2; shift 2
    local args=() want=()
    while [ "$1" != "--" ]; do args+=("$1"); shift; done; shift
    want=("$@")
    local log="$out/$name.log" start=$SECONDS
    # Own process group, so the whole run (script, timeout, QEMU) is ended by its id.
    setsid "$hv/run-qemu.sh" -T "$t" --log "$log" "${args[@]}" >/dev/null 2>&1 &
    local pid=$!
    while kill -0 $pid 2>/dev/null; do
        local ok=1
        for w in "${want[@]}"; do grep -qF -- "$w" "$log" 2>/dev/null || { ok=0; break; }; done
        [ $ok = 1 ] && break
        sleep 0.2
    done
    kill -- -$pid 2>/dev/null; wait $pid 2>/dev/null
    local missing=0
    for w in "${want[@]}"; do
        grep -qF -- "$w" "$log" || { echo "  missing: $w"; missing=1; }
    done
    if grep -q "PANIC\|exception .* at rip" "$log"; then echo "  hypervisor fault"; missing=1; fi
    if [ $missing = 0 ]; then echo "PASS $name ($((SECONDS - start)) s)"; else echo "FAIL $name"; sed 's/^/  | /' "$log" | tail -40; fail=1; fi
}
two_vms=("[hv] VM 0 PRE_VM0 starting: pCPUs 0,1, memory 256 MiB [GPA 0x0 -> HPA 0x10000000..0x20000000]"
         "[hv] VM 1 PRE_VM1 starting: pCPUs 2,3, memory 256 MiB [GPA 0x0 -> HPA 0x20000000..0x30000000]"
         "[PRE_VM0] guest up, cmdline: vm0 test args" "[PRE_VM1] guest up, cmdline: vm1 test args"
         "[PRE_VM0] multiboot magic 0x2BADB002" "[PRE_VM0] mem_upper KiB 0x0003FC00"
         "[PRE_VM0] AP started" "[PRE_VM1] AP started" "[PRE_VM0] guest done" "[PRE_VM1] guest done"
         "[PRE_VM0] rep outsb line" "[PRE_VM0] insb read LSR")
run two-vms-pvh 30 PRE_VM0_kernel="$out/good.elf" PRE_VM1_kernel="$out/good.elf" -- "${two_vms[@]}"
run two-vms-grub-mb2 60 --iso PRE_VM0_kernel="$out/good.elf" PRE_VM1_kernel="$out/good.elf" -- "${two_vms[@]}" "[hv] boot protocol Multiboot2"
run contain-outside-memory 30 PRE_VM0_kernel="$out/good.elf" PRE_VM1_kernel="$out/bad.elf" -- \
    "[hv] VM 1 PRE_VM1: no device at MMIO page 0x40000000: reads return all-ones, writes are ignored (reported once)" \
    "[PRE_VM1] guest done" "[PRE_VM0] guest done"
run contain-triple-fault 30 PRE_VM0_kernel="$out/triple.elf" PRE_VM1_kernel="$out/good.elf" -- \
    "[hv] VM 0 PRE_VM0 stopped: vCPU 0: triple fault (shutdown)" "[PRE_VM1] guest done"
run missing-module 30 PRE_VM0_kernel="$out/good.elf" -- \
    "[hv] VM 1 PRE_VM1 not started: no boot module tagged \"PRE_VM1_kernel\"" "[PRE_VM0] guest done"
exit $fail
