#!/usr/bin/env bash
# Builds all test guests in release mode and copies the images to OUT_DIR
# (default: tests/guests/out). Usage: tests/guests/build.sh [OUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/out}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$here/target}
guests=(hello rogue bench service-vm platform)

(cd "$here" && cargo build --release --locked -q)
mkdir -p "$out"
for g in "${guests[@]}"; do
    cp "$CARGO_TARGET_DIR/x86_64-unknown-none/release/$g" "$out/$g.elf"
    printf '%-10s %6d bytes  %s\n' "$g" "$(stat -c %s "$out/$g.elf")" "$out/$g.elf"
done
