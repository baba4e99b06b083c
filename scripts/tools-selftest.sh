#!/usr/bin/env bash
# Proves the tool check can fail: scripts/test.sh runs this with PATH holding only the programs of
# scripts/tools.txt. A listed program that is missing, and a listed program no package provides
# here, each make `tools.sh check` exit 1 and name the package to install.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "tools-selftest: FAIL: $*" >&2; exit 1; }

bash "$here/tools.sh" check || fail "the check fails with PATH=$PATH"

# A PATH without cpio (the program the issue found missing on a fresh machine).
bash "$here/tools.sh" bin "$work/bin"
rm "$work/bin/cpio"
if PATH=$work/bin bash "$here/tools.sh" check 2>"$work/err"; then
    fail "the check passed without cpio"
fi
grep -q 'cpio (package cpio)' "$work/err" || fail "no 'cpio (package cpio)' in: $(cat "$work/err")"
grep -q 'apt-get install -y cpio' "$work/err" || fail "no install command in: $(cat "$work/err")"

# A dependency added to the list that setup has not installed.
cp "$here/tools.txt" "$work/tools.txt"
echo "acrn-selftest-absent-program  acrn-selftest-package  tools-selftest.sh" >>"$work/tools.txt"
if ACRN_TOOLS_LIST=$work/tools.txt bash "$here/tools.sh" check 2>"$work/err"; then
    fail "the check passed with a program that is not installed"
fi
grep -q 'acrn-selftest-absent-program (package acrn-selftest-package)' "$work/err" ||
    fail "the missing program is not named: $(cat "$work/err")"
echo "tools-selftest: ok ($(grep -cv '^\s*\(#\|$\)' "$here/tools.txt") entries checked; a missing one fails with its package)"
