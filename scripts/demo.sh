#!/usr/bin/env bash
# The one demo command: installs what is missing, builds the eventbus command and runs its demo.
# Extra arguments go to `eventbus demo` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

mkdir -p build
dir=build/release
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DEVENTBUS_BUILD_TESTS=OFF >"$dir.configure.log" 2>&1 \
  || { cat "$dir.configure.log"; exit 1; }
cmake --build "$dir" -j "${EVENTBUS_JOBS:-2}" --target eventbus_cli
exec "$dir/eventbus" demo "$@"
