#!/bin/sh
# Boots a GRUB ISO in Bochs (Intel VMX via `cpu: model=tigerlake`) headless, with COM1 captured to
# a file, and stops when the guest writes "Shutdown" to port 0x8900, when Bochs dies, or at the
# timeout. Success is judged by the caller from the serial file (Bochs exits with status 1 on the
# shutdown port, so its status says nothing).
#
#   run-bochs.sh ISO [COM1_FILE] [TIMEOUT_SECONDS]
#   run-bochs.sh --make-iso OUT.iso ACRN_ELF [TAG=FILE ...] [-- CMDLINE...]
#
# Linux guests: bare Debian 6.1 hangs on Bochs' `tigerlake` model right after "LSM: Security
# Framework initializing" (no hypervisor involved); use BOCHS_MODEL=corei7_skylake_x for them.
# Environment: BOCHS_UNTIL (an extended regex: stop as soon as a line of the serial file matches
# it, for hypervisors that keep running after their VMs are done), BOCHS_CPUS (default 4; cores of one package), BOCHS_MEGS (1024), BOCHS_MODEL
# (tigerlake), BOCHS_LOG (Bochs' own log; default next to the serial file), BOCHS_KEEP=1 keeps the
# generated bochsrc. Exit status: 0 if Bochs ended by itself (shutdown port or triple fault with
# reset_on_triple_fault=0), 124 on timeout, 2 on usage errors, 3 when a tool is missing.
set -eu

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "run-bochs.sh: '$1' not found; install with:" >&2
        echo "  apt-get install -y bochs bochsbios vgabios grub-pc-bin grub-common xorriso mtools" >&2
        exit 3
    }
}

make_iso() {
    [ $# -ge 2 ] || { echo "usage: $0 --make-iso OUT.iso ACRN_ELF [TAG=FILE ...] [-- CMDLINE...]" >&2; exit 2; }
    need grub-mkrescue
    need xorriso
    out=$1
    elf=$2
    shift 2
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    mkdir -p "$dir/boot/grub"
    cp "$elf" "$dir/boot/acrn.elf"
    modules=""
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        tag=${1%%=*}
        file=${1#*=}
        [ "$tag" != "$1" ] && [ -f "$file" ] || { echo "run-bochs.sh: bad module '$1' (want TAG=FILE)" >&2; exit 2; }
        base=$(basename "$file")
        cp "$file" "$dir/boot/$base"
        modules="$modules  module2 /boot/$base $tag
"
        shift
    done
    [ $# -gt 0 ] && shift
    cat >"$dir/boot/grub/grub.cfg" <<CFG
set timeout=0
set default=0
menuentry "acrn" {
  multiboot2 /boot/acrn.elf $*
$modules  boot
}
CFG
    grub-mkrescue -o "$out" "$dir" >/dev/null 2>&1 || { echo "run-bochs.sh: grub-mkrescue failed" >&2; exit 1; }
    echo "$out"
}

if [ "${1:-}" = "--make-iso" ]; then
    shift
    make_iso "$@"
    exit 0
fi

[ $# -ge 1 ] && [ $# -le 3 ] || { echo "usage: $0 ISO [COM1_FILE] [TIMEOUT_SECONDS]" >&2; exit 2; }
iso=$1
com1=${2:-com1.txt}
limit=${3:-120}
[ -f "$iso" ] || { echo "run-bochs.sh: no such ISO: $iso" >&2; exit 2; }
need bochs
need timeout
for f in /usr/share/bochs/BIOS-bochs-latest /usr/share/vgabios/vgabios.bin; do
    [ -f "$f" ] || { echo "run-bochs.sh: missing $f (apt-get install -y bochsbios vgabios)" >&2; exit 3; }
done

work=$(mktemp -d)
[ "${BOCHS_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
log=${BOCHS_LOG:-$com1.bochs.log}
: >"$com1"
# The machine lines match configs/bochs-tigerlake/bochs-tigerlake.xml. `count=P:C:T` is
# processors:cores:threads (the Debian build has SMP; 4 CPUs run about 10x slower than 1, so
# BOCHS_CPUS=1 suits single-VM tests). The display is the rfb
# library with no wait for a client (the package has no nogui); it binds a port in 5900-5949.
# Dummy sound drivers: on a machine without a sound card, Bochs' ALSA output aborts at start-up
# with "buffer overflow detected".
cat >"$work/bochsrc" <<RC
megs: ${BOCHS_MEGS:-1024}
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
cpu: model=${BOCHS_MODEL:-tigerlake}, count=1:${BOCHS_CPUS:-4}:1, ips=200000000, reset_on_triple_fault=0
ata0-master: type=cdrom, path=$(realpath "$iso"), status=inserted
boot: cdrom
display_library: rfb, options="timeout=0"
com1: enabled=1, mode=file, dev=$(realpath "$com1")
pci: enabled=1, chipset=i440fx
port_e9_hack: enabled=1
speaker: enabled=0
sound: driver=dummy
clock: sync=none
log: $(realpath -m "$log")
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
RC
printf 'c\nquit\n' >"$work/cmds"
[ "${BOCHS_KEEP:-0}" = 1 ] && echo "run-bochs.sh: bochsrc kept in $work" >&2
set +e
timeout "$limit" bochs -q -f "$work/bochsrc" -rc "$work/cmds" </dev/null >"$work/stdout" 2>&1 &
pid=$!
if [ -n "${BOCHS_UNTIL:-}" ]; then
    while kill -0 "$pid" 2>/dev/null; do
        if grep -qE -- "$BOCHS_UNTIL" "$com1"; then
            # Stops `timeout`, which passes the signal on to Bochs.
            kill "$pid" 2>/dev/null
            wait "$pid"
            echo "run-bochs.sh: stopped on BOCHS_UNTIL match" >&2
            exit 0
        fi
        sleep 0.5
    done
fi
wait "$pid"
status=$?
set -e
if [ $status -eq 124 ]; then
    echo "run-bochs.sh: timeout after ${limit}s" >&2
    exit 124
fi
# Bochs' own reasons for stopping (shutdown port, triple fault, panic) for the caller's log.
grep -E "Shutdown port|triple fault|PANIC|exception\(\)" "$log" 2>/dev/null | tail -3 >&2 || true
exit 0
