#!/usr/bin/env bash
# Builds the Linux Service VM kernel: Debian's linux-source-6.1 with x86_64_defconfig plus the
# ACRN guest support and Linux's own ACRN HSM driver (/dev/acrn_hsm). The result is cached
# outside the repository and reused:
#
#   build-service-vm-kernel.sh [--small]
#
#   ${ACRN_CACHE:-$HOME/.cache/acrn-rs}/service-vm-kernel/<flavour>/bzImage
#
# The flavour is `full` (x86_64_defconfig + the ACRN options: what the Service VM needs to run
# acrn-dm with its disks and networks) or, with --small, `small`: the same without networking,
# sound, graphics, USB and disk controllers, enough to boot to a shell and bind the HSM in a
# fraction of the time. Its path is the last line printed. The full build takes about 11
# minutes on 2 idle cores; a cached kernel is reused when it was built from the same options
# (the `stamp` file next to it). The object tree stays in the cache (about 1 GiB), so another
# flavour or a rerun after an interruption rebuilds only what changed.
# Needs only apt-get download and dpkg-deb -x (no root, nothing installed); the build tools are
# in scripts/tools.txt.
set -euo pipefail

flavour=full
case "${1:-}" in
"") ;;
--small) flavour=small ;;
*)
    echo "usage: $0 [--small]" >&2
    exit 2
    ;;
esac

cache=${ACRN_CACHE:-$HOME/.cache/acrn-rs}/service-vm-kernel
package=linux-source-6.1
# What the Service VM needs on top of x86_64_defconfig: the ACRN guest (CPUID leaf, the 0xF3
# upcall vector), the HSM driver, hugetlbfs for acrn-dm's guest memory and pci-stub, which the
# launch scripts park pass-through functions on (binding there routes the function's INTx
# through ACPI, so its `irq` in sysfs is the GSI acrn-dm gives the User VM).
options=(HYPERVISOR_GUEST ACRN_GUEST VIRT_DRIVERS ACRN_HSM HUGETLBFS PCI_STUB)
# What --small leaves out: nothing the boot to a shell with the HSM needs.
small_off=(NET SOUND DRM FB USB_SUPPORT ATA SCSI MD HID INPUT_MOUSE AGP)
off=()
[[ $flavour == small ]] && off=("${small_off[@]}")
stamp_text="$package x86_64_defconfig +${options[*]} -${off[*]}"
out=$cache/$flavour

if [[ -f $out/bzImage && -f $out/stamp && $(<"$out/stamp") == "$stamp_text" ]]; then
    echo "$out/bzImage"
    exit 0
fi

work=$cache/build
src=$work/$package
mkdir -p "$work" "$out"
if [[ ! -f $src/Makefile ]]; then
    rm -rf "$work"
    mkdir -p "$work"
    cd "$work"
    echo "build-service-vm-kernel: fetching $package" >&2
    # apt-get download writes into the current directory; as root it warns that the _apt user
    # cannot write here, which is harmless.
    apt-get download "$package" >&2
    dpkg-deb -x "$package"_*.deb pkg
    tarball=$(echo pkg/usr/src/"$package".tar.*)
    [[ -f $tarball ]] || { echo "build-service-vm-kernel: $package has no source tarball" >&2; exit 1; }
    tar -xf "$tarball"
    rm -rf pkg "$package"_*.deb
fi
cd "$src"

make -s x86_64_defconfig >&2
for o in "${options[@]}"; do
    scripts/config --enable "$o"
done
for o in "${off[@]}"; do
    scripts/config --disable "$o"
done
make -s olddefconfig >&2
# olddefconfig drops an option whose dependencies are not met: say which instead of building a
# kernel without it.
for o in "${options[@]}"; do
    grep -qx "CONFIG_$o=y" .config || {
        echo "build-service-vm-kernel: CONFIG_$o is not set after olddefconfig (unmet dependency)" >&2
        exit 1
    }
done

echo "build-service-vm-kernel: building the $flavour bzImage (full: about 11 minutes on 2 idle cores)" >&2
make -s -j"$(nproc)" bzImage >&2

cp arch/x86/boot/bzImage "$out/bzImage.tmp"
cp .config "$out/config"
mv "$out/bzImage.tmp" "$out/bzImage"
echo "$stamp_text" >"$out/stamp"
echo "$out/bzImage"
