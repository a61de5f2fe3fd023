#!/usr/bin/env bash
# The one test command: installs what is missing, then builds and tests three configurations, each
# in its own build/<name> tree (reruns are incremental):
#   werror  g++ -O2, warnings as errors: the library, CLI, examples and benchmarks as they ship, and
#           the checks that cannot run under a sanitizer (latency figures, compile-time refusals,
#           the README and docs snippets, packaging);
#   asan    clang, ASan+UBSan with libFuzzer's coverage, assertions on (no NDEBUG, as the fuzzers
#           want): every test suite but the latency one, then a short libFuzzer pass over every
#           outside input (scripts/fuzz.sh, EVENTBUS_FUZZ_SECONDS a target) with the fuzz
#           targets of the same tree;
#   tsan    g++, TSan: the suites labelled "concurrency" (building only those, while the ASan
#           tests and the fuzz pass run).
# The sanitizer builds compile the library and CLI in batches of files (EVENTBUS_UNITY_BUILD);
# werror keeps one file per unit, so each file still compiles on its own.
# The library, CLI and examples are compiled by both compilers with -Werror, the concurrent test
# suites too; the other suites by clang, the benchmarks by g++. One clang build serves both the
# tests and the fuzzers.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

jobs="${EVENTBUS_JOBS:-2}"
# Tests mostly wait (on the broker, on timers, on other processes), not compute: four at a time on
# two cores halves the wall time (measured: werror 164 s -> 85 s, ASan 174 s -> 88 s).
test_jobs="${EVENTBUS_TEST_JOBS:-4}"
configs="${EVENTBUS_TEST_CONFIGS:-werror asan tsan}"

# Line tables (-g1) are enough for backtraces and perf, and build a third faster than full debug
# info; sanitizer builds use -O1, as the sanitizers recommend.
configure_and_build() {
  local name="$1" compiler="$2" sanitize="$3" flags="$4" target="$5"
  shift 5
  local dir="build/$name"
  # A tree made by another generator or compiler is made again: CMake would drop this command's
  # -D settings while it resets the cache for a new compiler.
  if [ -f "$dir/CMakeCache.txt" ] && { ! grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja$' "$dir/CMakeCache.txt" ||
                                       [ "$(cat "$dir.compiler" 2>/dev/null)" != "$compiler" ]; }; then
    rm -rf "$dir"
  fi
  echo "$compiler" >"$dir.compiler"
  echo "=== [$name] configure (at ${SECONDS}s)"
  cmake -G Ninja -S . -B "$dir" -DCMAKE_CXX_COMPILER="$compiler" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags" -DEVENTBUS_WERROR=ON -DEVENTBUS_SANITIZE="$sanitize" "$@" \
    >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  echo "=== [$name] build (at ${SECONDS}s)"
  cmake --build "$dir" -j "$jobs" --target "$target"
}

run_tests() {
  local name="$1" ctest_args="$2"
  echo "=== [$name] test (at ${SECONDS}s)"
  # shellcheck disable=SC2086
  # A test past 300 s fails (the longest takes about 80): a hang costs minutes, not the CI limit.
  # Each test program's own watchdog (tests/test_main.cpp) goes off first, at 240 s, and prints
  # the stacks of the hung program and of its child processes.
  (cd "build/$name" && ctest --output-on-failure --timeout 300 -j "$test_jobs" $ctest_args)
}

build_tsan() {
  configure_and_build tsan g++ "thread" "-O1 -g1 -DNDEBUG" concurrency_tests -DEVENTBUS_UNITY_BUILD=ON
}

# The ASan tests mostly wait (about one core busy of two) and the fuzz pass runs for a fixed time:
# the TSan tree builds meanwhile, with half the jobs (one on two cores) at a lower priority, its output kept
# in build/tsan.build.log (shown if it fails). Its tests run once the ASan ones are over.
tsan_build_pid=""
start_tsan_build() {
  case " $configs " in *" tsan "*) ;; *) return 0 ;; esac
  case "${configs%%tsan*}" in *asan*) ;; *) return 0 ;; esac  # asan comes before tsan
  echo "=== [tsan] configure and build in the background (from ${SECONDS}s)"
  # Its own process group (setsid), so that a failure here stops the whole build with it.
  setsid nice -n 10 bash -c "set -euo pipefail; $(declare -f configure_and_build build_tsan); jobs=$(( jobs > 2 ? jobs / 2 : 1 )); SECONDS=$SECONDS; build_tsan" \
    >build/tsan.build.log 2>&1 &
  tsan_build_pid=$!
  trap 'kill -- -"$tsan_build_pid" 2>/dev/null || true' EXIT
}
finish_tsan_build() {
  if [ -z "$tsan_build_pid" ]; then build_tsan; return; fi
  echo "=== [tsan] waiting for its build (at ${SECONDS}s)"
  if ! wait "$tsan_build_pid"; then
    tail -n 80 build/tsan.build.log
    echo "=== [tsan] build FAILED (log: build/tsan.build.log)" >&2
    return 1
  fi
  trap - EXIT
  grep '^===' build/tsan.build.log
}

mkdir -p build
for config in $configs; do
  case "$config" in
    werror) configure_and_build werror g++ "" "-O2 -g1 -DNDEBUG" all -DEVENTBUS_BUILD_BENCH=ON -DEVENTBUS_TESTS_IN_ALL=OFF
            run_tests werror "-L no-sanitizer|compile|packaging" ;;
    asan) configure_and_build asan clang++ "address,undefined" "-O1 -g1" all -DEVENTBUS_FUZZ=ON -DEVENTBUS_UNITY_BUILD=ON
          start_tsan_build
          ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_tests asan "-LE no-sanitizer|compile|packaging"
          echo "=== [asan] fuzz (at ${SECONDS}s)"
          EVENTBUS_FUZZ_DIR=build/asan bash scripts/fuzz.sh "${EVENTBUS_FUZZ_SECONDS:-10}" ;;
    tsan) finish_tsan_build
          TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
            run_tests tsan "-L concurrency" ;;
    *) echo "unknown test config: $config (werror, asan, tsan)" >&2; exit 2 ;;
  esac
done
echo "=== all test configurations passed: $configs (in ${SECONDS}s)"
