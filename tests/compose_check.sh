#!/usr/bin/env bash
# docker-compose.yml cannot run here (no Docker engine), so check what can be checked without one:
# Debian's docker-compose validates and normalises the file; every host file it mounts and every
# build context's Dockerfile (and what it COPYs) must exist; Prometheus' and Grafana's files must
# parse; Prometheus must scrape services that the file defines.
#   tests/compose_check.sh SOURCE_DIR
set -euo pipefail
cd "$1"
fail() { echo "compose check: $*" >&2; exit 1; }

command -v docker-compose >/dev/null || fail "docker-compose is not installed (scripts/setup.sh installs it)"
normalised=$(docker-compose -f docker-compose.yml config) || fail "docker-compose config rejected docker-compose.yml"

mounts=$(printf '%s\n' "$normalised" | python3 -c '
import sys, yaml
for service in yaml.safe_load(sys.stdin)["services"].values():
    for volume in service.get("volumes", []):
        source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
        if source.startswith("/"):
            print(source)')
[ -n "$mounts" ] || fail "found no mounted files: the normalised format changed?"
for path in $mounts; do
  [ -e "$path" ] || fail "mounted but missing: $path"
done

services=$(printf '%s\n' "$normalised" | python3 -c 'import sys, yaml; print(" ".join(yaml.safe_load(sys.stdin)["services"]))')
for wanted in kafka postgres order-service order-worker prometheus grafana; do
  [[ " $services " == *" $wanted "* ]] || fail "service '$wanted' is missing"
done

for context in $(printf '%s\n' "$normalised" | sed -n 's/^ *context: \(.*\)/\1/p' | sort -u); do
  [ -f "$context/Dockerfile" ] || fail "build context $context has no Dockerfile"
  for copied in $(sed -n 's/^COPY \([^-][^ ]*\) .*/\1/p' "$context/Dockerfile"); do
    [ -e "$context/$copied" ] || fail "Dockerfile copies '$copied', which does not exist"
  done
done

python3 - <<'PY' || fail "a Prometheus or Grafana file is invalid"
import json, sys, yaml
prom = yaml.safe_load(open("config/prometheus/prometheus.yml"))
compose = yaml.safe_load(open("docker-compose.yml"))
targets = set()
for job in prom["scrape_configs"]:
    for sc in job.get("static_configs", []):
        targets.update(t.split(":")[0] for t in sc["targets"])
    for sd in job.get("dns_sd_configs", []):
        targets.update(sd["names"])
service = compose["services"]["order-service"]
if service.get("deploy", {}).get("replicas", 1) < 2 or service["environment"].get("EVENTBUS_STORE_BACKEND") != "postgresql":
    sys.exit("order-service must run two replicas on the PostgreSQL store (the relay lease shows who relays)")
if "order-service" not in {n for job in prom["scrape_configs"] for sd in job.get("dns_sd_configs", []) for n in sd["names"]}:
    sys.exit("prometheus.yml must find every order-service replica (dns_sd_configs), not one")
unknown = targets - set(compose["services"])
if unknown:
    sys.exit(f"prometheus.yml scrapes hosts that docker-compose.yml does not define: {sorted(unknown)}")
dash = json.load(open("config/grafana/dashboards/eventbus.json"))
exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
for metric in ["eventbus_handler_duration_seconds_bucket", "eventbus_events_consumed_total",
               "eventbus_handler_retries_total", "eventbus_dead_letters_total", "eventbus_consumer_lag",
               "eventbus_worker_records_in_flight", "eventbus_worker_records_waiting_on_key",
               "eventbus_worker_partitions_paused", "eventbus_dead_letters_dropped_total",
               "eventbus_events_published_total{outcome=\"failed\"}", "eventbus_outbox_parked_events",
               "eventbus_outbox_backlog_events", "eventbus_outbox_relay_leading"]:
    if metric not in exprs:
        sys.exit(f"the dashboard does not chart {metric}")
# Loss first: the top panel charts what was lost or is at risk of being lost.
top = min(dash["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
if "eventbus_dead_letters_dropped_total" not in " ".join(t["expr"] for t in top["targets"]):
    sys.exit("the dashboard's first panel does not show dropped dead letters")
# Every metric a dashboard query or an alert rule names is one the project exports.
import re
exported = set(re.findall(r'Name\("(eventbus_[a-z_]+)"\)', open("src/metrics/metrics.cpp").read()))
alerts = yaml.safe_load(open("config/prometheus/alerts.yml"))
queries = [t["expr"] for p in dash["panels"] for t in p["targets"]] + \
          [r["expr"] for g in alerts["groups"] for r in g["rules"]]
for q in queries:
    for name in re.findall(r"eventbus_[a-z_]+", q):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        if name not in exported and base not in exported:
            sys.exit(f"a query names {name}, which the project does not export: {q}")
for f in ["config/grafana/provisioning/datasources/prometheus.yml", "config/grafana/provisioning/dashboards/eventbus.yml"]:
    yaml.safe_load(open(f))
PY

if command -v promtool >/dev/null; then
  promtool check config config/prometheus/prometheus.yml >/dev/null || fail "promtool rejects config/prometheus/prometheus.yml"
fi
echo "compose check: docker-compose.yml valid, $(echo "$mounts" | wc -w) mounts present, services: $services"
