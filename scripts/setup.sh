#!/usr/bin/env bash
# Installs what building, testing and benchmarking need on a fresh Debian machine (git, curl and
# apt are all it assumes); safe to run again. The packages are those of scripts/tools.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t packages < <(bash scripts/tools.sh packages)
# The emulators, boot-image and binary tools by name as well (tools.txt lists them too), so a
# reader of this script sees what a fresh machine gets.
packages+=(qemu-system-x86 bochs bochsbios vgabios grub-common grub-pc-bin xorriso mtools cpio
  binutils binutils-x86-64-linux-gnu gcc gcc-12 procps debootstrap)
# The Linux Service VM kernel (scripts/build-service-vm-kernel.sh builds Debian's
# linux-source-6.1 into a cache outside the repository).
packages+=(make flex bison bc libelf-dev libssl-dev xz-utils pkgconf diffutils perl-base shellcheck)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! command -v rustup >/dev/null 2>&1; then
  echo "setup: installing rustup"
  # rustup-init itself, from the host sh.rustup.rs's script downloads it from.
  # It must be called rustup-init: rustup picks its role from its own name.
  init_dir=$(mktemp -d)
  curl --proto '=https' --tlsv1.2 -sSf -o "$init_dir/rustup-init" \
    https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init
  chmod +x "$init_dir/rustup-init"
  "$init_dir/rustup-init" -y --profile minimal --default-toolchain none
  rm -rf "$init_dir"
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
# rust-toolchain.toml names the toolchain, its components and the bare-metal target.
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add x86_64-unknown-none >/dev/null

# --- fuzzing (issue 10): scripts/fuzz.sh needs the nightly toolchain (libFuzzer's
# instrumentation) and cargo-fuzz; its C++ compiler (g++) is in tools.txt. ---
setup_fuzzing() {
  rustup run nightly rustc --version >/dev/null 2>&1 ||
    rustup toolchain install nightly --profile minimal
  cargo +nightly fuzz --version >/dev/null 2>&1 ||
    cargo +nightly install cargo-fuzz --version 0.13.2 --locked
}
setup_fuzzing
bash scripts/tools.sh check
