#!/usr/bin/env bash
# Installs whatever the build, tests and demo need that this Debian machine lacks.
# Safe to run again: it only calls apt-get when a package is really missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  librdkafka-dev nlohmann-json3-dev prometheus-cpp-dev doctest-dev
  libsimdjson-dev  # the worker reads envelopes with it
  libsqlite3-dev libpq-dev postgresql  # the event store's backends; tests start a throwaway PostgreSQL
  libbenchmark-dev kcat
  clang libclang-rt-14-dev  # libFuzzer: scripts/fuzz.sh
  docker-compose prometheus  # validating docker-compose.yml; a real Prometheus scraping a worker
  gdb  # a hung test prints its stacks (tests/test_main.cpp)
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "setup: installing missing packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "setup: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
