#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer, nightly toolchain) of every parser and
# guest-facing decoder: fuzz/fuzz_targets/*.rs.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 20 seconds, every target)
#   FUZZ_RUNS=1000000 scripts/fuzz.sh 3600     (the benchmark: stop each at 1M executions)
#
# Per target: replays the committed crash inputs (fuzz/regressions/TARGET), then fuzzes for
# SECONDS from the working corpus (fuzz/corpus/TARGET, not committed), the hand-made seeds
# (fuzz/seeds/TARGET) and, for the configurator targets, the project's configs and the ACRN
# corpus (../shared/acrn-corpus, copied at run time). Prints executions, coverage (edges and
# features) and findings per target; a finding's input is kept in fuzz/artifacts/TARGET.
# Exits non-zero if any target found something. Targets run one after another (2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-20}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "fuzz.sh: SECONDS must be a positive number (got '$seconds')" >&2
  exit 2
fi

if ! cargo +nightly --version >/dev/null 2>&1 || ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: needs the nightly toolchain and cargo-fuzz; run scripts/setup.sh" >&2
  exit 2
fi

cd fuzz
all_targets=$(cargo +nightly fuzz list)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets <<<"$all_targets"
fi
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$all_targets" || { echo "fuzz.sh: no target '$t' (have: $(echo $all_targets))" >&2; exit 2; }
done

# One build for every target. Debug assertions and overflow checks stay on (cargo-fuzz's
# default without -O); no sanitizer: the code under test is safe Rust apart from the I/O
# request page, whose target checks every pointer itself.
build=(-s none)
echo "== building fuzz targets =="
cargo +nightly fuzz build "${build[@]}"

# Seeds the configurator targets get at run time (never committed: the ACRN corpus is not ours
# to copy into the repository).
runtime_seeds() {
  local t=$1 dir=$2
  local corpus=$root/../shared/acrn-corpus
  mkdir -p "$dir"
  local files=()
  case $t in
    xml) files=("$root"/configs/*/*.xml) ;;
    scenario) files=("$root"/configs/*/*.xml "$root"/configs/*/*.toml) ;;
    board) files=("$root"/configs/*/*.xml) ;;
    *) return 0 ;;
  esac
  if [ -d "$corpus" ]; then
    while IFS= read -r f; do files+=("$f"); done < <(find "$corpus" -name '*.xml' | sort)
  fi
  local i=0
  for f in "${files[@]}"; do
    # The board target gets the board files, the scenario target the others.
    # Inputs are capped at 64 KiB (-max_len): larger boards would only arrive truncated.
    [ "$(stat -c %s "$f")" -le 65536 ] || continue
    local is_board=0
    grep -qi '<processors\|CPU_PROCESSOR_INFO' "$f" && is_board=1
    if [ "$t" = board ] && [ $is_board = 0 ]; then continue; fi
    if [ "$t" = scenario ] && [ $is_board = 1 ]; then continue; fi
    cp "$f" "$dir/$(printf '%03d' $i)-$(basename "$f")"
    i=$((i + 1))
  done
}

summary=()
failed=0
for t in "${targets[@]}"; do
  echo
  echo "== $t =="
  artifacts=$root/fuzz/artifacts/$t
  corpus=$root/fuzz/corpus/$t
  extra=$root/fuzz/target/runtime-seeds/$t
  mkdir -p "$artifacts" "$corpus"
  rm -rf "$extra"
  runtime_seeds "$t" "$extra"
  regressions=(regressions/"$t"/*)
  if [ -e "${regressions[0]}" ]; then
    echo "replaying ${#regressions[@]} committed crash input(s)"
    cargo +nightly fuzz run "${build[@]}" "$t" "${regressions[@]}" -- -runs=1 >/dev/null 2>"$artifacts/replay.log" || {
      tail -n 30 "$artifacts/replay.log"
      echo "fuzz.sh: $t fails on a committed crash input (see $artifacts/replay.log)" >&2
      failed=1
      summary+=("$(printf '%-10s %s' "$t" 'REGRESSION: a committed crash input fails again')")
      continue
    }
  fi
  seed_dirs=()
  for d in "seeds/$t" "$extra"; do
    [ -d "$d" ] && [ -n "$(ls -A "$d")" ] && seed_dirs+=("$d")
  done
  before=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  log=$artifacts/fuzz.log
  status=0
  cargo +nightly fuzz run "${build[@]}" "$t" "$corpus" "${seed_dirs[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -max_len=65536 ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} >"$log" 2>&1 || status=$?
  after=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  units=$(grep -o 'corp: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  findings=$((after - before))
  if [ "$status" -ne 0 ] || [ "$findings" -ne 0 ]; then
    failed=1
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -n 5 || true
    echo "fuzz.sh: $t: finding(s) in $artifacts (log: $log)" >&2
  fi
  summary+=("$(printf '%-10s %12s %9s %7s %8s %7s %8s' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${units:-?}" "$findings")")
  tail -n 3 "$log"
done

echo
echo "== fuzzing summary ($seconds s per target) =="
printf '%-10s %12s %9s %7s %8s %7s %8s\n' target executions "execs/s" edges features corpus findings
printf '%s\n' "${summary[@]}"
exit "$failed"
