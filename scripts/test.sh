#!/usr/bin/env bash
# The project's test command: formatting, lints, host tests of every crate, then emulator boots.
# Emulator boots (tests/system) build the hypervisor per scenario and boot it in QEMU TCG and
# Bochs; the Linux guest test downloads Debian's kernel once into <target>/linux-cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

step() { printf '\n== %s ==\n' "$*"; }

step "tools (scripts/tools.txt)"
bash scripts/tools.sh check
# From here on PATH holds only the programs of scripts/tools.txt: a script or test that runs a
# program setup.sh does not install fails here, not on a user's fresh machine.
tools_bin=$(mktemp -d)
trap 'rm -rf "$tools_bin"' EXIT
bash scripts/tools.sh bin "$tools_bin"
export PATH=$tools_bin
bash scripts/tools-selftest.sh

step "format"
cargo fmt --all -- --check
(cd hypervisor && cargo fmt --all -- --check)
(cd tests/guests && cargo fmt --all -- --check)
(cd fuzz && cargo fmt --all -- --check)

step "lints"
cargo clippy --workspace --all-targets -- -D warnings
# The hypervisor's build script generates its tables from a board and a scenario.
(cd hypervisor && ACRN_BOARD="$PWD/../configs/qemu-epyc/qemu-epyc.xml" \
    ACRN_SCENARIO="$PWD/../configs/qemu-epyc/partitioned.xml" cargo clippy -- -D warnings)
# ... and its host unit tests, which build for the host target.
(cd hypervisor && ACRN_BOARD="$PWD/../configs/qemu-epyc/qemu-epyc.xml" \
    ACRN_SCENARIO="$PWD/../configs/qemu-epyc/partitioned.xml" \
    cargo clippy --lib --tests --target x86_64-unknown-linux-gnu -- -D warnings)
(cd tests/guests && cargo clippy -- -D warnings)

step "host tests"
# The emulator boots are the last step, on their own (one emulator at a time).
cargo test --workspace --exclude acrn-system-tests
(cd hypervisor && cargo test --lib --target x86_64-unknown-linux-gnu)
(cd tests/guests && cargo test -p guest-common -p service-vm --target x86_64-unknown-linux-gnu)

step "fuzzing smoke (every target 10 s)"
bash scripts/fuzz.sh 10

step "test guests on bare QEMU"
bash tests/guests/smoke.sh

step "hypervisor boot fixtures (PVH and GRUB paths, containment)"
bash hypervisor/tests-guest/run-tests.sh

step "emulator boots"
cargo test -p acrn-system-tests -- --test-threads=1
