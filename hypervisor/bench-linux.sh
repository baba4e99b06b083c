#!/bin/sh
# Linux boot-time benchmark in QEMU TCG (AMD SVM): Debian's kernel to the end of its init (the
# "VFS: Unable to mount root fs" panic) as a pre-launched VM of configs/qemu-epyc/linux.xml,
# and the same kernel on bare QEMU with the same CPUs and memory, in one run. Prints the wall
# time of each (from emulator start to the line) and the kernel's own timestamp of the line,
# and their ratios.
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

# Seconds (wall) until $line appears in file $1 while command $2... runs; kills it then.
timed() {
    log=$1
    shift
    start=$(date +%s.%N)
    "$@" >"$log" 2>&1 &
    pid=$!
    while ! grep -q "$line" "$log" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "bench-linux.sh: no '$line' from $*" >&2; tail -20 "$log" >&2; exit 1; }
        sleep 0.05
    done
    end=$(date +%s.%N)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$start $end" | awk '{ printf "%.2f", $2 - $1 }'
}

guest_time() {
    sed -n "s/.*\[ *\([0-9.]*\)\] Kernel panic - not syncing: $line.*/\1/p" "$1" | head -1
}

(cd "$root" && cargo run --quiet --release -p acrn-configurator -- build --board qemu-epyc \
    --scenario linux --release --out "$work/image" --module "Linux_bzImage=$kernel") >/dev/null
# The pre-launched VM has 2 vCPUs and 512 MiB; the bare run gets the same.
bare=$(timed "$work/bare.log" timeout 300 qemu-system-x86_64 -machine q35 -accel tcg -cpu EPYC \
    -smp 2 -m 512M -nographic -serial stdio -monitor none -no-reboot -kernel "$kernel" \
    -append "console=ttyS0 earlyprintk=serial,ttyS0 nokaslr panic=0")
acrn=$(timed "$work/acrn.log" timeout 300 qemu-system-x86_64 -machine q35 -accel tcg -cpu EPYC \
    -smp 4 -m 2G -nographic -serial stdio -monitor none -no-reboot \
    -cdrom "$work/image/acrn.iso")
gbare=$(guest_time "$work/bare.log")
gacrn=$(guest_time "$work/acrn.log")
echo "Linux to the end of init (QEMU TCG, EPYC, 2 CPUs, 512 MiB):"
echo "  bare QEMU        : wall ${bare} s (including BIOS), kernel time ${gbare} s"
echo "  pre-launched VM  : wall ${acrn} s (including BIOS, GRUB, hypervisor), kernel time ${gacrn} s"
echo "$gacrn $gbare $acrn $bare" | awk '{ printf "  ratio            : kernel time %.2fx, wall %.2fx\n", $1 / $2, $3 / $4 }'
