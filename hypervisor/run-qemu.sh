#!/usr/bin/env bash
# Build the hypervisor for a set of tables and boot it in QEMU TCG (AMD EPYC, SVM+NPT).
#
#   run-qemu.sh [-t TABLES.rs] [-T SECONDS] [--iso] [--log FILE] TAG=FILE [TAG=FILE...]
#
# Every TAG=FILE becomes a boot module whose tag is TAG (match it with kern_mod/ramdisk_mod).
# Default path: PVH (`-kernel acrn`) with the modules packed into one newc cpio `-initrd` (QEMU's
# PVH passes a single module; the hypervisor unpacks the archive by file name). --iso boots a
# GRUB ISO instead: multiboot2 with one `module2 /boot/FILE TAG` line per module.
# Serial output goes to stdout (and to --log FILE); exit status is QEMU's, 124 on timeout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tables="$here/tests-tables/qemu_partitioned.rs"
timeout=30
iso=0
log=/dev/null
mods=()
while [ $# -gt 0 ]; do
    case "$1" in
        -t) tables=$(realpath "$2"); shift 2 ;;
        -T) timeout=$2; shift 2 ;;
        --iso) iso=1; shift ;;
        --log) log=$2; shift 2 ;;
        *=*) mods+=("$1"); shift ;;
        *) echo "usage: $0 [-t TABLES.rs] [-T SECONDS] [--iso] [--log FILE] TAG=FILE..." >&2; exit 2 ;;
    esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
export ACRN_TABLES_RS=$tables
(cd "$here" && cargo build --release --quiet)
elf="$CARGO_TARGET_DIR/x86_64-unknown-none/release/acrn"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

qemu=(qemu-system-x86_64 -machine q35 -accel tcg -cpu EPYC -smp 4 -m 2G -nographic -no-reboot
      -net none -serial stdio -monitor none -display none
      -device isa-debug-exit,iobase=0xf4,iosize=0x04)
if [ $iso = 1 ]; then
    mkdir -p "$work/iso/boot/grub"
    cp "$elf" "$work/iso/boot/acrn.elf"
    {
        echo "set timeout=0"; echo "set default=0"
        echo 'menuentry "acrn" {'
        echo "  multiboot2 /boot/acrn.elf"
        for m in "${mods[@]}"; do
            tag=${m%%=*}; file=${m#*=}
            cp "$file" "$work/iso/boot/$tag.bin"
            echo "  module2 /boot/$tag.bin $tag"
        done
        echo "  boot"; echo "}"
    } > "$work/iso/boot/grub/grub.cfg"
    grub-mkrescue -o "$work/acrn.iso" "$work/iso" >/dev/null 2>&1
    qemu+=(-cdrom "$work/acrn.iso")
else
    mkdir -p "$work/mods"
    for m in "${mods[@]}"; do
        cp "$(realpath "${m#*=}")" "$work/mods/${m%%=*}"
    done
    (cd "$work/mods" && find . -type f | sed 's|^\./||' | cpio -o -H newc --quiet > "$work/mods.cpio")
    qemu+=(-kernel "$elf" -initrd "$work/mods.cpio")
fi
set +e
timeout --foreground "$timeout" "${qemu[@]}" 2> >(grep -v "TCG doesn't support" >&2) | tee "$log"
exit "${PIPESTATUS[0]}"
