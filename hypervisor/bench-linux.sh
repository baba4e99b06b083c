#!/bin/sh
# Linux boot-time benchmark in QEMU TCG (AMD SVM): Debian's kernel to the end of its init (the
# "VFS: Unable to mount root fs" panic) as a pre-launched VM of configs/qemu-epyc/linux.xml,
# and the same kernel on bare QEMU with the same CPUs and memory, in one run. Prints the wall
# time of each from the kernel's first line ("Linux version") to that line (firmware, GRUB and
# the hypervisor's own start are not counted), and their ratio.
#
#   bench-linux.sh [VMLINUZ]
#
# VMLINUZ defaults to the kernel the system tests cache (target/linux-cache/vmlinuz; run
# `cargo test -p acrn-system-tests --test linux qemu` once to fetch it).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
kernel=${1:-$root/target/linux-cache/vmlinuz}
[ -f "$kernel" ] || { echo "bench-linux.sh: no kernel at $kernel" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
line='VFS: Unable to mount root fs'

# Runs QEMU named $2 with the arguments after it, each output line stamped with the wall
# time into file $1, until $line appears; prints the seconds from the first "Linux version"
# line to it.
timed() {
    log=$1
    name=$2
    shift 2
    set -- timeout 300 qemu-system-x86_64 -name "$name" "$@"
    "$@" 2>&1 | while IFS= read -r l; do printf '%s %s\n' "$(date +%s.%N)" "$l"; done >"$log" &
    while ! grep -q "$line" "$log" 2>/dev/null; do
        jobs %1 >/dev/null 2>&1 || { echo "bench-linux.sh: no '$line' from $*" >&2; tail -20 "$log" >&2; exit 1; }
        sleep 0.1
    done
    pkill -f -- "-name $name" 2>/dev/null || true
    kill %1 2>/dev/null || true
    wait 2>/dev/null || true
    start=$(grep -m1 "Linux version" "$log" | cut -d' ' -f1)
    end=$(grep -m1 "$line" "$log" | cut -d' ' -f1)
    echo "$start $end" | awk '{ printf "%.2f", $2 - $1 }'
}

(cd "$root" && cargo run --quiet --release -p acrn-configurator -- build --board qemu-epyc \
    --scenario linux --release --out "$work/image" --module "Linux_bzImage=$kernel") >/dev/null
# The pre-launched VM has 2 vCPUs and 512 MiB; the bare run gets the same.
bare=$(timed "$work/bare.log" bench-bare -machine q35 -accel tcg -cpu EPYC \
    -smp 2 -m 512M -nographic -serial stdio -monitor none -no-reboot -kernel "$kernel" \
    -append "console=ttyS0 earlyprintk=serial,ttyS0 nokaslr panic=0")
acrn=$(timed "$work/acrn.log" bench-acrn -machine q35 -accel tcg -cpu EPYC \
    -smp 4 -m 2G -nographic -serial stdio -monitor none -no-reboot \
    -cdrom "$work/image/acrn.iso")
echo "Linux from its first line to the end of init (QEMU TCG, EPYC, 2 CPUs, 512 MiB), wall time:"
echo "  bare QEMU       : ${bare} s"
echo "  pre-launched VM : ${acrn} s"
echo "$acrn $bare" | awk '{ printf "  ratio           : %.2fx\n", $1 / $2 }'
