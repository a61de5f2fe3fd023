#!/usr/bin/env bash
# Soak: a broker (`eventbus dev-broker`, its own process), a publisher at a steady rate and two
# workers of one group, for MINUTES (default 30). The handler fails now and then (1 % of events
# permanently, 5 % of calls transiently); the second worker is restarted every RESTART_EVERY
# minutes (default 5), alternately with SIGTERM and SIGKILL. Every minute it prints each process's
# resident memory, open file descriptors and threads; at the end, the accounting: published =
# handled + dead-lettered, and how many were handled twice. Exits 1 if an event is missing.
# Not part of CI: bench/README.md records a 30-minute run.
#
#   scripts/soak.sh [MINUTES]       EVENTBUS_SOAK_RATE (events/s, default 500), EVENTBUS_SOAK_RESTART_EVERY
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
rate="${EVENTBUS_SOAK_RATE:-500}"
restart_every="${EVENTBUS_SOAK_RESTART_EVERY:-5}"
jobs="${EVENTBUS_JOBS:-2}"

bash scripts/setup.sh
dir=build/soak
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEVENTBUS_BUILD_BENCH=ON -DEVENTBUS_BUILD_TESTS=OFF \
  >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "$jobs" --target eventbus_cli soak_node
node="$dir/bench/soak_node"
run="$dir/run.$$"
mkdir -p "$run"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

"$dir/eventbus" dev-broker --partitions 16 --topic app.soak.soak.tick >"$run/broker.addr" 2>"$run/broker.log" &
broker=$!
pids+=("$broker")
for _ in $(seq 100); do [ -s "$run/broker.addr" ] && break; sleep 0.1; done
bootstrap=$(head -n 1 "$run/broker.addr")
[ -n "$bootstrap" ] || { echo "soak: the broker did not start" >&2; exit 1; }

start_worker() {  # name -> pid
  # stdout to the log too: $(start_worker) would otherwise wait for the worker to close it
  "$node" work "$bootstrap" soak "$run/handled.$1.$RANDOM" >>"$run/$1.log" 2>&1 &
  echo $!
}
worker_a=$(start_worker a)
worker_b=$(start_worker b)
pids+=("$worker_a" "$worker_b")
"$node" publish "$bootstrap" "$rate" $((minutes * 60)) "$run/published" 2>"$run/publisher.log" &
publisher=$!
pids+=("$publisher")

gone() {  # waits until the process exits (the workers are not this shell's children)
  while kill -0 "$1" 2>/dev/null; do sleep 0.2; done
}

sample() {  # label pid -> "label rss_kb fds threads"
  local rss threads fds
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$2/status" 2>/dev/null || echo -)
  threads=$(awk '/^Threads/ {print $2}' "/proc/$2/status" 2>/dev/null || echo -)
  fds=$(ls "/proc/$2/fd" 2>/dev/null | wc -l)
  printf '  %-10s rss %7s kB  fds %4s  threads %3s' "$1" "$rss" "$fds" "$threads"
}

echo "soak: $minutes min at $rate events/s, broker $bootstrap, files in $run"
restarts=0
for minute in $(seq 1 "$minutes"); do
  sleep 60  # the sampling period itself, not a synchronisation
  published=$(wc -l <"$run/published")
  echo "min $minute: published $published$(sample broker "$broker")$(sample publisher "$publisher")$(sample worker-a "$worker_a")$(sample worker-b "$worker_b")"
  if [ $((minute % restart_every)) -eq 0 ] && [ "$minute" -lt "$minutes" ]; then
    signal=$([ $((restarts % 2)) -eq 0 ] && echo TERM || echo KILL)
    kill -s "$signal" "$worker_b"; gone "$worker_b"
    worker_b=$(start_worker b)
    pids+=("$worker_b")
    restarts=$((restarts + 1))
    echo "min $minute: worker-b restarted after SIG$signal"
  fi
done

wait "$publisher"
# The workers catch up: account until nothing is missing, for at most two minutes.
for _ in $(seq 24); do
  "$node" account "$bootstrap" "$run/published" "$run"/handled.* >"$run/account" 2>&1 && break
  sleep 5
done
kill -TERM "$worker_a" "$worker_b"; gone "$worker_a"; gone "$worker_b"
"$node" account "$bootstrap" "$run/published" "$run"/handled.* | sed 's/^/soak: /'
