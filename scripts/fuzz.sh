#!/usr/bin/env bash
# Runs the libFuzzer targets built in BUILD_DIR (make fuzz) for FUZZ_SECONDS each, FUZZ_PARALLEL
# at a time, and prints one line per target: seconds, executions, crashes found. Each target
# starts from its committed corpus (tests/fuzz/<target>/, read only) and grows a working corpus in
# BUILD_DIR/corpus/<target>/; this run's crashing inputs go to BUILD_DIR/artifacts/<target>/ --
# after a fix, copy one into tests/fuzz/<target>/ as a regression (make test replays it).
#
#   scripts/fuzz.sh BUILD_DIR [TARGET...]     (default: every fuzz_* executable in BUILD_DIR)
set -euo pipefail

build_dir=$(realpath "$1")
shift
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-600}
parallel=${FUZZ_PARALLEL:-1}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for exe in "$build_dir"/tests/fuzz/fuzz_*; do targets+=("$(basename "$exe" | sed 's/^fuzz_//')"); done
fi

run_one() {
  local t=$1 exe="$build_dir/tests/fuzz/fuzz_$1"
  [ -x "$exe" ] || { echo "fuzz: no fuzzer $exe (make fuzz builds them)" >&2; return 1; }
  rm -rf "$build_dir/artifacts/$t"  # this run's findings only
  mkdir -p "$build_dir/corpus/$t" "$build_dir/artifacts/$t" "$build_dir/logs"
  local log="$build_dir/logs/$t.log"
  # -timeout: an input that takes longer is a finding (a hang); -rss_limit_mb likewise for memory.
  # The exit status is ignored: a crash is counted from the artifacts below.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    "$exe" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$build_dir/artifacts/$t/" "$build_dir/corpus/$t" "$root/tests/fuzz/$t" \
    >"$log" 2>&1 || true
  local execs="" crashes ran="" rate=""
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 ||
    true)
  # The time it ran: libFuzzer stops at the first crash, before FUZZ_SECONDS.
  ran=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' |
    tail -1 || true)
  if [ -z "$ran" ]; then  # stopped by a finding: executions / executions per second
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
    [ -n "$rate" ] && [ "$rate" -gt 0 ] && ran="~$(( ${execs:-0} / rate ))"
  fi
  crashes=$(find "$build_dir/artifacts/$t" -type f \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  printf '%-16s %8s s %12s executions %4s crashes  (log: %s)\n' "$t" "${ran:-?}" \
    "${execs:-?}" "$crashes" "$log"
}
export -f run_one
export build_dir root seconds

printf '%s\n' "${targets[@]}" | xargs -P "$parallel" -I{} bash -c 'run_one "$@"' _ {}
