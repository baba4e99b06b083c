#!/usr/bin/env bash
# Builds the Linux Service VM kernel: Debian's linux-source-6.1 with x86_64_defconfig plus the
# ACRN guest support and Linux's own ACRN HSM driver (/dev/acrn_hsm). The result is cached
# outside the repository and reused:
#
#   ${ACRN_CACHE:-$HOME/.cache/acrn-rs}/service-vm-kernel/bzImage
#
# Its path is the last line printed. The build takes about 11 minutes on 2 cores; a cached
# kernel is reused when it was built from the same options (the `stamp` file next to it).
# Needs only apt-get download and dpkg-deb -x (no root, nothing installed); the build tools are
# in scripts/tools.txt.
set -euo pipefail

cache=${ACRN_CACHE:-$HOME/.cache/acrn-rs}/service-vm-kernel
package=linux-source-6.1
# What the Service VM needs on top of x86_64_defconfig: the ACRN guest (CPUID leaf, the 0xF3
# upcall vector), the HSM driver and hugetlbfs for acrn-dm's guest memory.
options=(HYPERVISOR_GUEST ACRN_GUEST VIRT_DRIVERS ACRN_HSM HUGETLBFS)
stamp_text="$package x86_64_defconfig ${options[*]}"

if [[ -f $cache/bzImage && -f $cache/stamp && $(<"$cache/stamp") == "$stamp_text" ]]; then
    echo "$cache/bzImage"
    exit 0
fi

mkdir -p "$cache"
work=$cache/build
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
src=$work/$package
cd "$src"

make -s x86_64_defconfig >&2
for o in "${options[@]}"; do
    scripts/config --enable "$o"
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

echo "build-service-vm-kernel: building bzImage (about 11 minutes on 2 cores)" >&2
jobs=$(nproc)
make -s -j"$jobs" bzImage >&2

cp arch/x86/boot/bzImage "$cache/bzImage.tmp"
cp .config "$cache/config"
mv "$cache/bzImage.tmp" "$cache/bzImage"
echo "$stamp_text" >"$cache/stamp"
# The object tree is about 1 GiB; only the image and its configuration are kept.
cd "$cache"
rm -rf "$work"
echo "$cache/bzImage"
