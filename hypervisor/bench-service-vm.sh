#!/bin/sh
# Service VM round-trip benchmark (not a test): the cost of one hypercall and of one port read
# of a post-launched VM served by the Service VM's device model, in TSC ticks measured by the
# guests themselves (emulated ticks in Bochs: deterministic with `clock: sync=none`, ips=2e8;
# host ticks at 2.6 GHz under QEMU TCG).
#
#   bench-service-vm.sh [bochs|qemu|both]      (default: both)
#
# For each emulator the script builds the shared scenario of its board (configs/bochs-tigerlake
# for Bochs/VMX, configs/qemu-epyc for QEMU/SVM) with two changes in a temporary copy:
# * POST_VM1 is renamed POST_BENCH1, so it runs tests/guests' bench guest;
# * the Service VM's command line gets `hcbench=HC` (it times HC HC_GET_API_VERSION calls with
#   RDTSC) and `guestargs=iterations=IT,port=0x3ff,reads=RD` (bench in the post-launched VM:
#   RD reads of its console UART's scratch register, each an I/O request the device model
#   completes; IT iterations of the built-in write/read/CPUID loops, also forwarded).
# It stops the emulator at the Service VM's verdict and prints the numbers.
# Environment: BENCH_HC (default 1000), BENCH_READS (200), BENCH_ITER (50),
# BENCH_TIMEOUT (seconds per run, default 600). Exit status: 0 with a report, 1 when a number is
# missing (transcript tail shown), 2 on usage errors.
set -eu
which=${1:-both}
case "$which" in bochs | qemu | both) ;; *) echo "usage: $0 [bochs|qemu|both]" >&2; exit 2 ;; esac
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
hc=${BENCH_HC:-1000}
reads=${BENCH_READS:-200}
iter=${BENCH_ITER:-50}
limit=${BENCH_TIMEOUT:-600}
work=$(mktemp -d)
pid=
cleanup() {
    [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# bench EMULATOR BOARD
bench() {
    emu=$1
    board=$2
    dir=$work/$emu
    mkdir -p "$dir"
    sed -e 's/POST_VM1/POST_BENCH1/' \
        -e "0,/<bootargs>console=ttyS0<\/bootargs>/s//<bootargs>console=ttyS0 hcbench=$hc guestargs=iterations=$iter,port=0x3ff,reads=$reads<\/bootargs>/" \
        "$root/configs/$board/shared.xml" >"$dir/bench.xml"
    (cd "$root" && cargo run --quiet --release -p acrn-configurator -- build --board "$board" \
        --scenario "$dir/bench.xml" --out "$dir/image") >"$dir/build.log" 2>&1 || {
        echo "bench-service-vm.sh: build for $board failed:" >&2
        tail -20 "$dir/build.log" >&2
        exit 1
    }
    log=$dir/console.txt
    : >"$log"
    cmd=$(python3 -c 'import json,sys,shlex; print(shlex.join(json.load(open(sys.argv[1]))["emulators"][sys.argv[2]]))' \
        "$dir/image/manifest.json" "$emu")
    start=$(date +%s)
    if [ "$emu" = bochs ]; then
        # Bochs writes COM1 to the image's com1.txt.
        (cd "$dir/image" && export LANG=C && eval "exec $cmd" </dev/null >"$dir/emu.out" 2>&1) &
        pid=$!
        log=$dir/image/com1.txt
    else
        (eval "exec $cmd" </dev/null >"$log" 2>"$dir/emu.out") &
        pid=$!
    fi
    while kill -0 "$pid" 2>/dev/null; do
        if [ -f "$log" ] && grep -aq 'SERVICE_VM\] verdict:\|\[hv\] PANIC\|\[hv\] FATAL\|SERVICE_VM stopped' "$log"; then
            break
        fi
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            echo "bench-service-vm.sh: $emu timed out after $limit s" >&2
            break
        fi
        sleep 1
    done
    # The subshell exec'd the emulator, so $pid is the emulator itself.
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
    wall=$(($(date +%s) - start))
    value() {
        sed -n "s/.*$1=\([0-9][0-9]*\).*/\1/p" "$log" | tail -1
    }
    hct=$(value hypercall_ticks)
    hcl=$(value 'svm: bench.*loop_ticks')
    prt=$(value port_read_ticks)
    pw=$(value pio_write_ticks)
    cp=$(value cpuid_ticks)
    if [ -z "$hct" ] || [ -z "$prt" ]; then
        echo "bench-service-vm.sh: $emu: numbers missing; transcript tail:" >&2
        tail -30 "$log" >&2
        exit 1
    fi
    echo "$emu ($board shared, Service VM + bench in POST_BENCH1, $wall s wall):"
    echo "  hypercall (HC_GET_API_VERSION) round trip : $hct ticks  (avg of $hc, empty loop ${hcl:-?})"
    echo "  post-launched port read via the DM        : $prt ticks  (avg of $reads inb 0x3ff)"
    echo "  post-launched port write via the DM       : ${pw:-?} ticks  (avg of $iter outb 0x3ff)"
    echo "  post-launched CPUID (hypervisor only)     : ${cp:-?} ticks  (avg of $iter)"
    grep -a 'SERVICE_VM\] verdict:' "$log" | sed 's/^/  /' | tail -1
}

case "$which" in
bochs) bench bochs bochs-tigerlake ;;
qemu) bench qemu qemu-epyc ;;
both)
    bench qemu qemu-epyc
    bench bochs bochs-tigerlake
    ;;
esac
