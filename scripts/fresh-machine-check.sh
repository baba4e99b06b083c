#!/usr/bin/env bash
# The fresh-machine check of the README's two commands: an empty Debian (debootstrap, minbase)
# in DIR, with only git, curl and ca-certificates added; this repository's HEAD is cloned into
# DIR/work/repo and ACRN's corpus (../shared/acrn-corpus, when present) copied beside it; then,
# in a chroot, `bash scripts/setup.sh && cargo run -p acrn-configurator -- run --board qemu-epyc
# --scenario partitioned --timeout 60` and `bash scripts/test.sh` (ACRN_REQUIRE_CORPUS=1 when
# the corpus was copied). setup.sh installs the Rust toolchain with rustup.
#
#   sudo scripts/fresh-machine-check.sh DIR [SUITE]      (SUITE: default bookworm)
#
# Needs root, debootstrap and network access to Debian's mirror and static.rust-lang.org. The
# host's CA bundle is copied in, for networks whose HTTPS proxy has its own CA. DIR is kept
# (delete it with `rm -rf DIR` once this script has ended: /proc, /sys and /dev are unmounted).
# Exit status: the README commands' (0 when both pass), 2 on usage errors.
set -euo pipefail
[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: $0 DIR [SUITE]" >&2; exit 2; }
dir=$(realpath -m "$1")
suite=${2:-bookworm}
repo=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" -eq 0 ] || { echo "$0: needs root (debootstrap, chroot, mount)" >&2; exit 2; }
[ ! -e "$dir" ] || { echo "$0: $dir exists; give a new directory" >&2; exit 2; }

debootstrap --variant=minbase "$suite" "$dir" http://deb.debian.org/debian
cp /etc/resolv.conf "$dir/etc/resolv.conf"
mkdir -p "$dir/work/shared"
git clone -q "$repo" "$dir/work/repo"
corpus=0
if [ -d "$repo/../shared/acrn-corpus" ]; then
    cp -r "$repo/../shared/acrn-corpus" "$dir/work/shared/"
    corpus=1
fi
unmount() {
    for m in proc sys dev; do
        # rslave first, so unmounting the chroot's submounts never reaches the host's.
        mount --make-rslave "$dir/$m" 2>/dev/null || true
        umount -R "$dir/$m" 2>/dev/null || true
    done
}
trap unmount EXIT
for m in proc sys dev; do
    mount --rbind "/$m" "$dir/$m"
    mount --make-rslave "$dir/$m"
done
chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
chroot "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git curl ca-certificates >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
chroot "$dir" env -i HOME=/root TERM=dumb ACRN_REQUIRE_CORPUS=$corpus \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c 'set -e
        cd /work/repo
        [ "$ACRN_REQUIRE_CORPUS" = 1 ] || unset ACRN_REQUIRE_CORPUS
        echo "fresh: README command 1 ($(date -u +%T))"
        bash scripts/setup.sh && cargo run -p acrn-configurator -- run --board qemu-epyc --scenario partitioned --timeout 60
        echo "fresh: README command 2 ($(date -u +%T))"
        bash scripts/test.sh
        echo "fresh: both README commands passed ($(date -u +%T))"'
