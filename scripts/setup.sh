#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine; safe to run again.
set -euo pipefail

packages=(qemu-system-x86 bochs bochsbios vgabios grub-pc-bin grub-common xorriso mtools linux-libc-dev gcc libc6-dev util-linux)
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
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
# rust-toolchain.toml names the toolchain, its components and the bare-metal target.
cd "$(dirname "$0")/.."
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup target add x86_64-unknown-none >/dev/null

# --- fuzzing (issue 10): scripts/fuzz.sh needs the nightly toolchain (libFuzzer's
# instrumentation), cargo-fuzz and a C++ compiler (libfuzzer-sys builds libFuzzer). ---
setup_fuzzing() {
  if ! dpkg-query -W -f='${Status}' g++ 2>/dev/null | grep -q "install ok installed"; then
    local sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    echo "setup: installing g++"
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++
  fi
  rustup run nightly rustc --version >/dev/null 2>&1 ||
    rustup toolchain install nightly --profile minimal
  cargo +nightly fuzz --version >/dev/null 2>&1 ||
    cargo +nightly install cargo-fuzz --version 0.13.2 --locked
}
setup_fuzzing
