#!/usr/bin/env bash
# Boots every test guest directly in QEMU (multiboot1 `-kernel`, no hypervisor) and checks
# its serial transcript. Exit status 0 only if every check passes.
# Usage: tests/guests/smoke.sh [--bochs] [OUT_DIR]
#   --bochs        also boot hello from a GRUB ISO in Bochs (Intel corei7_skylake_x, 2 CPUs)
#   SMOKE_TIMEOUT  seconds per boot (default 60)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
with_bochs=0
if [[ ${1:-} == --bochs ]]; then
    with_bochs=1
    shift
fi
out=${1:-$here/out}
limit=${SMOKE_TIMEOUT:-60}
qemu=qemu-system-x86_64

if ! command -v "$qemu" >/dev/null; then
    echo "FAIL: $qemu not found; install it with: apt-get install -y qemu-system-x86" >&2
    exit 1
fi
"$here/build.sh" "$out" || { echo "FAIL: build" >&2; exit 1; }

failures=0

# watch NAME PID UNTIL: waits until a line of $out/NAME.log matches the regex UNTIL (then
# stops PID) or PID exits by itself (sets exited=1). A timeout is a failure.
watch() {
    local name=$1 pid=$2 until=$3 t=0
    exited=0
    while (( t < limit * 10 )); do
        if ! kill -0 "$pid" 2>/dev/null; then exited=1; break; fi
        if grep -Eq "$until" "$out/$name.log" 2>/dev/null; then sleep 0.2; break; fi
        sleep 0.1
        t=$((t + 1))
    done
    if (( exited == 0 )); then
        kill "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    if (( t >= limit * 10 )); then
        fail "$name: timed out after ${limit}s"
    fi
}

# boot NAME IMAGE UNTIL QEMU-ARGS...: boots IMAGE in QEMU (multiboot1 -kernel) with its
# serial port in $out/NAME.log, then watches it.
boot() {
    local name=$1 image=$2 until=$3
    shift 3
    : >"$out/$name.log"
    "$qemu" -machine q35 -cpu EPYC -display none -monitor none -net none -no-reboot \
        -serial "file:$out/$name.log" -kernel "$image" "$@" 2>"$out/$name.qemu.err" &
    watch "$name" $! "$until"
}

fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

# expect NAME REGEX...: every regex must match a whole line of the transcript.
expect() {
    local name=$1 re
    shift
    for re in "$@"; do
        grep -Exq "$re" "$out/$name.log" || fail "$name: no line matching /$re/"
    done
}

check() {
    local name=$1 before=$failures
    shift
    "$@"
    if (( failures == before )); then
        echo "ok:   $name"
    elif [[ -f $out/$name.log ]]; then
        echo "----- $name transcript ($out/$name.log):"
        cat "$out/$name.log"
        echo "-----"
    fi
}

# The boot contract, checked on the file itself: ELF64 ET_EXEC, one PT_LOAD with
# p_paddr == p_vaddr at or above 1 MiB, entry below 4 GiB, a .bss section (ACRN clears it
# by name) and a valid multiboot1 header, 4-byte aligned, inside the first 8 KiB.
image() {
    local f=$1 hdr load words i
    hdr=$(readelf -hW "$f")
    grep -q 'Class: *ELF64' <<<"$hdr" || fail "$f: not ELF64"
    grep -q 'Type: *EXEC' <<<"$hdr" || fail "$f: not ET_EXEC"
    local entry
    entry=$(awk '/Entry point address/ {print $4}' <<<"$hdr")
    (( entry < 0x100000000 )) || fail "$f: entry $entry above 4 GiB"
    load=$(readelf -lW "$f" | awk '$1 == "LOAD"')
    [[ $(wc -l <<<"$load") == 1 ]] || fail "$f: expected exactly one PT_LOAD"
    read -r _ _ vaddr paddr _ <<<"$load"
    [[ $vaddr == "$paddr" ]] || fail "$f: p_vaddr $vaddr != p_paddr $paddr"
    (( paddr >= 0x100000 )) || fail "$f: loads below 1 MiB ($paddr)"
    readelf -SW "$f" | grep -q ' \.bss ' || fail "$f: no .bss section"
    mapfile -t words < <(od -An -v -tx4 -w4 -N 8192 "$f")
    for ((i = 0; i + 2 < ${#words[@]}; i++)); do
        if [[ ${words[i]// /} == 1badb002 ]]; then
            local sum=$(( (0x${words[i]// /} + 0x${words[i+1]// /} + 0x${words[i+2]// /}) & 0xffffffff ))
            (( sum == 0 )) && return
        fi
    done
    fail "$f: no valid multiboot1 header in the first 8 KiB"
}

images() {
    local g
    command -v readelf >/dev/null || { fail "images: readelf not found; apt-get install -y binutils"; return; }
    for g in hello rogue bench; do image "$out/$g.elf"; done
}

hello_256() {
    boot hello-256 "$out/hello.elf" '^verdict: ' -smp 2 -m 256M -append "smoke ticks=20"
    expect hello-256 'guest: hello' 'cmdline: .*smoke ticks=20' 'memory: 256' 'cpus: 2' \
        'cpu 0 up' 'cpu 1 up' 'cpus-online: 2' 'hypervisor: .+' 'tick 20' 'verdict: PASS'
}

hello_128() {
    boot hello-128 "$out/hello.elf" '^verdict: ' -smp 4 -m 128M -append "smoke ticks=2"
    expect hello-128 'memory: 128' 'cpus: 4' 'cpus-online: 4' 'tick 2' 'verdict: PASS'
}

# The verdict must be able to fail: with APs held back, cpus-online (1) != cpus (2).
hello_nosmp() {
    boot hello-nosmp "$out/hello.elf" '^verdict: ' -smp 2 -m 256M -append "smoke ticks=1 nosmp"
    expect hello-nosmp 'cpus: 2' 'cpus-online: 1' 'verdict: FAIL \(cpus-online != cpus\)'
}

rogue() {
    boot rogue "$out/rogue.elf" '^$never' -smp 2 -m 256M -append "smoke"
    expect rogue 'guest: rogue' 'cpus-online: 2' 'rogue: touching memory outside my VM' \
        'rogue: wrote 0x10000000' 'rogue: wrote 0x110000000' 'rogue: still alive' \
        'rogue: triple-faulting now'
    # With -no-reboot a triple fault ends QEMU: proof that the guest really faulted.
    (( exited == 1 )) || fail "rogue: QEMU did not stop after the triple fault"
}

# hello through GRUB's multiboot1 loader on an Intel CPU model. Bochs 2.7 aborts
# ("buffer overflow detected") while reading its config under LANG=C.UTF-8, hence LANG=C.
hello_bochs() {
    local d=$out/bochs tool
    for tool in bochs grub-mkrescue xorriso; do
        command -v $tool >/dev/null || {
            fail "hello-bochs: $tool not found; apt-get install -y bochs bochsbios vgabios grub-pc-bin xorriso mtools"
            return
        }
    done
    rm -rf "$d" && mkdir -p "$d/iso/boot/grub"
    cp "$out/hello.elf" "$d/iso/boot/"
    printf 'set timeout=0\nmenuentry hello {\n  multiboot /boot/hello.elf bochs-smoke ticks=3\n  boot\n}\n' \
        >"$d/iso/boot/grub/grub.cfg"
    grub-mkrescue -o "$d/hello.iso" "$d/iso" >"$d/grub.log" 2>&1 || { fail "hello-bochs: grub-mkrescue"; return; }
    cat >"$d/bochsrc" <<RC
megs: 128
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
cpu: model=corei7_skylake_x, count=2, ips=200000000, reset_on_triple_fault=0
ata0-master: type=cdrom, path=$d/hello.iso, status=inserted
boot: cdrom
display_library: rfb, options="timeout=0"
com1: enabled=1, mode=file, dev=$out/hello-bochs.log
clock: sync=none, time0=1
speaker: enabled=0
log: $d/bochs.log
panic: action=fatal
error: action=report
info: action=ignore
debug: action=ignore
RC
    printf 'c\nquit\n' >"$d/cmds"
    : >"$out/hello-bochs.log"
    LANG=C LC_ALL=C bochs -q -f "$d/bochsrc" -rc "$d/cmds" </dev/null >"$d/bochs.out" 2>&1 &
    watch hello-bochs $! '^verdict: '
    expect hello-bochs 'loader: GRUB.*' 'cmdline: bochs-smoke ticks=3' 'memory: 128' 'cpus: 2' \
        'cpu 1 up' 'cpus-online: 2' 'tick 3' 'verdict: PASS'
}

bench() {
    boot bench "$out/bench.elf" '^verdict: ' -smp 1 -m 256M -append "smoke"
    expect bench 'guest: bench' 'bench: pio_write_ticks=[0-9]+' 'bench: cpuid_ticks=[0-9]+' \
        'verdict: PASS'
    grep '^bench: ' "$out/bench.log"
}

check images images
check hello-256 hello_256
check hello-nosmp hello_nosmp
check hello-128 hello_128
check rogue rogue
check bench bench
if (( with_bochs )); then
    check hello-bochs hello_bochs
fi

if (( failures )); then
    echo "smoke: $failures failure(s)"
    exit 1
fi
echo "smoke: all guests passed"
