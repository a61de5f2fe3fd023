#!/usr/bin/env bash
# Fuzzes every outside input with libFuzzer: builds the targets of tests/fuzz/ with clang and
# ASan+UBSan in build/fuzz (or in EVENTBUS_FUZZ_DIR, a tree already configured for them), then runs
# each for SECONDS (default 60) on its seed corpus (tests/fuzz/corpus/<target>, read only; new
# inputs go to <tree>/corpus/<target>). Prints each target's executions and the total; exits
# non-zero on the first crash, leak or sanitizer report, leaving the input that caused it in the
# tree (crash-*, leak-*, timeout-*).
#
#   scripts/fuzz.sh 600          # ten minutes a target
#   scripts/fuzz.sh 10           # what scripts/test.sh runs (in build/asan): a quick regression pass
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"  # the seed corpus is found from here, whatever the tree's depth
seconds="${1:-60}"
jobs="${EVENTBUS_JOBS:-2}"
targets=(decode_event worker_record config publish_line dead_letter_headers commit_metadata export_line handlers_page)

bash scripts/setup.sh
# EVENTBUS_FUZZ_DIR: a tree configured with EVENTBUS_FUZZ=ON and ASan+UBSan already (scripts/test.sh
# passes its asan tree); otherwise build/fuzz, configured here for the fuzz targets alone.
dir="${EVENTBUS_FUZZ_DIR:-build/fuzz}"
if [ -z "${EVENTBUS_FUZZ_DIR:-}" ]; then
  # The configure log goes next to the build directory: on a fresh clone nothing has made build/ yet.
  mkdir -p build
  cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DEVENTBUS_FUZZ=ON -DEVENTBUS_SANITIZE="address,undefined" \
    -DEVENTBUS_WERROR=ON -DEVENTBUS_BUILD_TESTS=OFF -DEVENTBUS_BUILD_CLI=OFF -DEVENTBUS_BUILD_EXAMPLES=OFF \
    >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
fi
cmake --build "$dir" -j "$jobs" --target "${targets[@]/#/fuzz_}"

# One target per core: each libFuzzer run is a single thread (test.sh's pass: 8 targets, 90 s -> 45 s).
fuzz_one() {
  local target="$1" corpus="$dir/corpus/$1" log="$dir/fuzz_$1.log"
  mkdir -p "$corpus"
  # -rss_limit_mb: a target that grows past it is a finding; -timeout: one input taking 10 s is one.
  (cd "$dir" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "./tests/fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
     "corpus/$target" "$root/tests/fuzz/corpus/$target") >"$log" 2>&1
}

declare -A running=()  # pid -> target
failed=""
wait_one() {
  local pid
  wait -n -p pid || failed="${running[$pid]}"
  unset "running[$pid]"
}
for target in "${targets[@]}"; do
  [ -z "$failed" ] || break
  [ "${#running[@]}" -lt "$jobs" ] || wait_one
  fuzz_one "$target" &
  running[$!]="$target"
done
while [ "${#running[@]}" -gt 0 ]; do wait_one; done
if [ -n "$failed" ]; then
  tail -n 60 "$dir/fuzz_$failed.log"
  echo "fuzz: $failed FAILED (input and log in $dir)" >&2
  exit 1
fi

total=0
for target in "${targets[@]}"; do
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$dir/fuzz_$target.log" | grep -o '[0-9]*$' || echo 0)
  total=$((total + runs))
  printf 'fuzz: %-20s %12d executions in %ss, no crash\n' "$target" "$runs" "$seconds"
done
printf 'fuzz: %d executions in all, no crash\n' "$total"
