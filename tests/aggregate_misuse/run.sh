#!/usr/bin/env bash
# Each misuse in misuse.cpp fails to compile with the message that says what to fix; the correct
# use next to them compiles.
#   run.sh CXX [COMPILER FLAGS...]
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cxx="$1"
shift
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
compile() { "$cxx" -std=c++20 -fsyntax-only -Wall -Wextra -Werror "$@" "$here/misuse.cpp" >"$log" 2>&1; }

if ! compile "$@" -DCASE_ok; then
  echo "the correct use does not compile:"; head -30 "$log"; exit 1
fi
while IFS='|' read -r name message; do
  if compile "$@" "-DCASE_$name"; then
    echo "CASE_$name compiled: it must not"; status=1
  elif ! grep -qF -- "$message" "$log"; then
    echo "CASE_$name failed without saying: $message"; head -20 "$log"; status=1
  else
    echo "CASE_$name refused: $message"
  fi
done <<'CASES'
no_aggregate_type|needs `static constexpr std::string_view aggregate_type`
no_events|needs `using events = eventbus::event_types<...>`
events_not_a_list|State::events must be eventbus::event_types<E...>
missing_apply|needs a member `void apply(const E&)` for every E in State::events
other_aggregate|must have the state's aggregate_type
listed_twice|State::events lists an event type twice
snapshot_without_json|a state with snapshot_version needs to_json(nlohmann::json&, const State&)
raise_unlisted|a command can only raise events listed in State::events
command_shape|a command is called as command(const State&, raised<State>&) or command(const State&)
command_returns_unlisted|returns one event of State::events, or eventbus::result of one
command_returns_int|returns void or eventbus::result<void>
CASES
exit "$status"
