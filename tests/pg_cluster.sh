#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, from Debian's postgresql package: a fresh cluster
# (initdb) on a free loopback port, run as an unprivileged user when started as root (the server
# refuses root), stopped and deleted by `stop`. CTest runs `start` and `stop` as fixtures around
# the store tests; the tests read the connection string from <state-dir>/dsn.
#
#   tests/pg_cluster.sh start <state-dir>     prints the DSN
#   tests/pg_cluster.sh stop <state-dir>
set -euo pipefail

action="${1:?start|stop}"
state="${2:?state directory}"
bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[ -x "$bin/initdb" ] || { echo "pg_cluster: PostgreSQL server not installed (scripts/setup.sh installs it)" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  [ -f "$state/datadir" ] || return 0
  local data
  data="$(cat "$state/datadir")"
  as_owner "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$(dirname "$data")" "$state/datadir" "$state/dsn"
}

case "$action" in
  start)
    mkdir -p "$state"
    stop  # a cluster left by an interrupted run
    # The data directory lives where the server's user may write: under /tmp, owned by it.
    root="$(mktemp -d /tmp/eventbus-pg.XXXXXX)"
    chmod 755 "$root"
    data="$root/data"
    [ "$(id -u)" -eq 0 ] && chown postgres "$root"
    echo "$data" > "$state/datadir"
    # fsync stays on (the server's default): the store tests check what a commit survives.
    as_owner "$bin/initdb" -D "$data" -U eventbus -A trust --no-sync -E UTF8 >"$root/initdb.log" 2>&1 ||
      { cat "$root/initdb.log" >&2; exit 1; }
    # A free loopback port: try random ones until the server starts on one nobody listens on.
    started=""
    for _ in 1 2 3 4 5 6 7 8; do
      port=$((20000 + RANDOM % 40000))
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi  # taken
      if as_owner "$bin/pg_ctl" -D "$data" -l "$root/server.log" -w -t 60 \
           -o "-p $port -k $root -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null; then
        started=yes
        break
      fi
    done
    [ -n "$started" ] || { cat "$root/server.log" >&2; exit 1; }
    dsn="host=127.0.0.1 port=$port user=eventbus dbname=postgres"
    echo "$dsn" > "$state/dsn"
    echo "$dsn"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop <state-dir>" >&2; exit 2 ;;
esac
