#!/bin/sh
# Exit-cost benchmark under Bochs (Intel VMX): boots ACRN_ELF with the bench guest as a boot
# module and reports what the guest measured, in emulated TSC ticks (deterministic with
# `clock: sync=none`, `ips=200000000`), plus the size of the hypervisor image.
#
#   bench-bochs.sh [ACRN_ELF BENCH_ELF [MODULE_TAG]]
#
# ACRN_ELF is a hypervisor built for configs/bochs-tigerlake with a scenario whose VM loads the
# module MODULE_TAG (default PRE_VM0_kernel; e.g. the partitioned scenario). BENCH_ELF is
# tests/guests' bench guest (tests/guests/build.sh). Without arguments the script builds both:
# the guests with tests/guests/build.sh and the image with `acrn-configurator build --board
# bochs-tigerlake --scenario partitioned --release` (the bench guest on PRE_VM0, hello on PRE_VM1). The guest times N iterations with RDTSC
# around one exit each (OUTB to the vUART scratch register 0x3FF, CPUID(0), a write of the
# local APIC's EOI register, a WRMSR of IA32_TSC_DEADLINE) and prints the
# averages and the cost of the empty loop; this script subtracts that baseline.
# Environment: BENCH_TIMEOUT (seconds, default 300), BOCHS_* as for run-bochs.sh.
# Exit status: 0 with a report, 1 when the guest's lines are missing (transcript shown).
set -eu
[ $# -eq 0 ] || [ $# -eq 2 ] || [ $# -eq 3 ] || {
    echo "usage: $0 [ACRN_ELF BENCH_ELF [MODULE_TAG]]" >&2
    exit 2
}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ $# -eq 0 ]; then
    root=$(dirname "$here")
    "$root/tests/guests/build.sh" "$work/guests" >/dev/null
    (cd "$root" && cargo run --quiet --release -p acrn-configurator -- build --board bochs-tigerlake \
        --scenario partitioned --release --out "$work/image" \
        --module "PRE_VM0_kernel=$work/guests/bench.elf" \
        --module "PRE_VM1_kernel=$work/guests/hello.elf") >/dev/null
    set -- "$work/image/acrn.elf" "$work/guests/bench.elf"
fi
elf=$1
bench=$2
tag=${3:-PRE_VM0_kernel}
for f in "$elf" "$bench"; do
    [ -f "$f" ] || { echo "bench-bochs.sh: no such file: $f" >&2; exit 2; }
done
"$here/run-bochs.sh" --make-iso "$work/bench.iso" "$elf" "$tag=$bench" >/dev/null
# The hypervisor keeps running after the guest's verdict: stop there.
BOCHS_UNTIL='verdict:|stopped:' "$here/run-bochs.sh" "$work/bench.iso" "$work/com1.txt" \
    "${BENCH_TIMEOUT:-300}" || true

value() {
    # The line may carry the hypervisor's per-VM prefix; take the number after `NAME=`.
    sed -n "s/.*bench: $1=\([0-9][0-9]*\).*/\1/p" "$work/com1.txt" | tail -1
}
pio=$(value pio_write_ticks)
cpuid=$(value cpuid_ticks)
loop=$(value loop_ticks)
eoi=$(value eoi_ticks)
rearm=$(value tsc_deadline_ticks)
if [ -z "$pio" ] || [ -z "$cpuid" ] || [ -z "$eoi" ] || [ -z "$rearm" ]; then
    echo "bench-bochs.sh: the bench guest did not report; serial transcript:" >&2
    cat "$work/com1.txt" >&2
    exit 1
fi
loop=${loop:-0}
file_size=$(wc -c <"$elf")
# Bytes the image occupies in memory: the sum of its PT_LOAD memory sizes (text, data, bss).
loaded=0
for m in $(readelf -lW "$elf" | awk '$1 == "LOAD" { print $6 }'); do
    loaded=$((loaded + m))
done
echo "bench (Bochs tigerlake, emulated TSC ticks per exit, loop baseline $loop subtracted):"
echo "  vuart port write : $((pio - loop))   (raw $pio)"
echo "  cpuid            : $((cpuid - loop))   (raw $cpuid)"
echo "  vLAPIC EOI write : $((eoi - loop))   (raw $eoi)"
echo "  TSC-deadline arm : $((rearm - loop))   (raw $rearm)"
echo "acrn.elf: $file_size bytes on disk, $loaded bytes loaded (PT_LOAD memsz)"
