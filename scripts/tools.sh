#!/usr/bin/env bash
# The programs of scripts/tools.txt: what setup installs and what the tests may run.
#
#   tools.sh packages     the Debian packages, one per line (scripts/setup.sh installs them;
#                         the Rust toolchain, marked `(rustup)`, it installs with rustup)
#   tools.sh check        every program on PATH and every file present, else a list of what is
#                         missing with the package to install; exit status 1
#   tools.sh bin DIR      fill DIR with one symlink per listed program (found on the current
#                         PATH); scripts/test.sh runs the tests with PATH=DIR:<Rust toolchain>
#                         so a program not listed cannot run
#
# Only bash builtins are used before `bin` has linked the programs, so `check` works with
# any PATH, including an empty one.
set -euo pipefail
here=${BASH_SOURCE[0]%/*}
[[ $here != "${BASH_SOURCE[0]}" ]] || here=.
list=${ACRN_TOOLS_LIST:-$here/tools.txt}

# Calls `each NAME PACKAGE` for every entry of the list.
entries() {
    local name package _
    while read -r name package _; do
        [[ -z $name || $name == \#* ]] && continue
        [[ -n $package ]] || { echo "tools.sh: $list: '$name' has no package" >&2; exit 2; }
        "$1" "$name" "$package"
    done <"$list"
}

packages_seen=" "
print_package() {
    [[ $2 == "(rustup)" ]] && return
    [[ $packages_seen == *" $2 "* ]] && return
    packages_seen+="$2 "
    echo "$2"
}

missing=()
missing_packages=" "
check_one() {
    if [[ $1 == /* ]]; then
        [[ -e $1 ]] && return
    else
        type -P "$1" >/dev/null && return
    fi
    if [[ $2 == "(rustup)" ]]; then
        missing+=("$1 (the Rust toolchain: run scripts/setup.sh)")
        return
    fi
    missing+=("$1 (package $2)")
    [[ $missing_packages == *" $2 "* ]] || missing_packages+="$2 "
}

bin_dir=
link_one() {
    [[ $1 == /* ]] && return
    local target
    # A file, also for programs that are shell builtins too (kill).
    target=$(type -P "$1") || { echo "tools.sh: '$1' is not on PATH (package $2)" >&2; exit 1; }
    ln -sfn "$target" "$bin_dir/$1"
}

case "${1:-}" in
packages) entries print_package ;;
check)
    entries check_one
    if ((${#missing[@]})); then
        echo "missing programs and files (scripts/tools.txt):" >&2
        printf '  %s\n' "${missing[@]}" >&2
        echo "install them with: sudo apt-get install -y${missing_packages% } (or run scripts/setup.sh)" >&2
        exit 1
    fi
    ;;
bin)
    [[ $# -eq 2 ]] || { echo "usage: $0 bin DIR" >&2; exit 2; }
    bin_dir=$2
    mkdir -p "$bin_dir"
    entries link_one
    ;;
*)
    echo "usage: $0 packages | check | bin DIR" >&2
    exit 2
    ;;
esac
