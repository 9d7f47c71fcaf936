#!/usr/bin/env bash
# The benchmark: builds release, seeds a fresh database, starts the service,
# drives every scenario on 127.0.0.1 and writes target/bench/report.json.
#
#   scripts/bench.sh [sqlite|postgres] [--customers N] [--accounts A]
#                    [--per-account M] [--seconds S] [--concurrency C]
#
# Defaults: 1,000,000 customers in one account, 1,000 accounts × 1,000,
# 10 s per scenario, 32 connections. Every step is bounded in time; no
# traffic leaves 127.0.0.1.
#
#   scripts/bench.sh [sqlite|postgres] --soak SECONDS [--customers N] …
#
# runs the soak instead: mixed reads, searches, creates, updates and deletes
# for SECONDS, the server's memory sampled every 10 s; it fails on any 5xx or
# failed connection, or when memory keeps growing after warm-up. Report:
# target/bench/soak-<backend>.json.
set -euo pipefail
cd "$(dirname "$0")/.."

backend=sqlite
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then backend=$1; shift; fi
customers=1000000 accounts=1000 per_account=1000 seconds=10 concurrency=32 soak=
while [ $# -gt 0 ]; do
  case "$1" in
    --customers) customers=$2; shift 2 ;;
    --accounts) accounts=$2; shift 2 ;;
    --per-account) per_account=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --soak) soak=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

cargo build --release --quiet --bin customers --example bench
bin=target/release/customers
bench=target/release/examples/bench
mkdir -p target/bench

url=$(scripts/fresh-database.sh "$backend" bench)
export CUSTOMERS_LOG=warn

# The main account goes in through `customers import` from an NDJSON file,
# timed: that is the import figure (a user's path: parse, validate, write).
"$bench" ndjson --customers "$customers" > target/bench/main.ndjson
"$bin" migrate --database "$url" > /dev/null
echo "importing $customers customers on $backend…" >&2
import_started=$(date +%s%N)
timeout 3600 "$bin" import --database "$url" --account P00000001 --file target/bench/main.ndjson >&2
import_ns=$(( $(date +%s%N) - import_started ))
rm -f target/bench/main.ndjson
echo "seeding $accounts × $per_account on $backend…" >&2
seed=$(timeout 3600 "$bench" seed --database "$url" --accounts "$accounts" --per-account "$per_account")
# The seeding's writes reach the disk before anything is timed: PostgreSQL
# spreads a checkpoint over minutes, and the kernel writes dirty pages back
# on its own time; either ran beside the first scenarios (the HTTP ceiling,
# which reads no data, gave 13.7k/s in the first round against 31–48k/s in
# later ones).
if [ "$backend" = postgres ]; then timeout 600 psql -q "$url" -c CHECKPOINT; fi
timeout 600 sync

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
started=$(date +%s%N)
# Rate limiting off: the load comes from one client on purpose. Webhooks go
# to the benchmark's receiver on loopback; a refused delivery waits an hour
# (the backlog scenario makes them due itself).
"$bin" serve --database "$url" --listen "127.0.0.1:$port" --rate-limit 0 \
  --webhooks-allow-private --webhooks-retry-delays 1h > target/bench/serve.log 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 3000); do
  curl -sf "http://127.0.0.1:$port/health/ready" > /dev/null && break
  sleep 0.01
done
ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
sleep 2
rss_idle=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

token_for() {
  "$bin" tokens issue --database "$url" --account "$1" --scopes admin:customers --subject bench --ttl 7200 \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
extra=$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d.update(import_per_second=round(int(sys.argv[4]) * 1e9 / int(sys.argv[5])), startup_ms=int(sys.argv[2]), rss_idle_kib=int(sys.argv[3])); print(json.dumps(d))' "$seed" "$ready_ms" "$rss_idle" "$customers" "$import_ns")

if [ -n "$soak" ]; then
  set +e
  timeout $((soak + 120)) "$bench" soak --base "http://127.0.0.1:$port" --token "$(token_for P00000001)" \
    --customers "$customers" --seconds "$soak" --concurrency "$concurrency" --server-pid "$pid" \
    --report "target/bench/soak-$backend.json" > /dev/null
  result=$?
  set -e
  kill -TERM "$pid"; wait "$pid"; stopped=$?
  trap - EXIT
  python3 - "target/bench/soak-$backend.json" "$stopped" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"soak: {r['seconds']} s, {r['concurrency']} connections, {r['requests']} requests ({r['rps']:.0f}/s)")
print("statuses:", ", ".join(f"{s}: {c}" for s, c in r["statuses"].items()))
print(f"5xx or failed connections: {r['server_errors_or_failed_connections']}")
print("RSS MiB:", " ".join(f"{s['rss_kib'] / 1024:.1f}" for s in r["rss_samples"]))
print(f"memory flat after warm-up: {r['rss_flat']}   server exit code after SIGTERM: {sys.argv[2]}")
PY
  exit $(( result != 0 || stopped != 0 ))
fi

timeout 1800 "$bench" load --database "$url" --base "http://127.0.0.1:$port" \
  --token "$(token_for P00000001)" --small-token "$(token_for P00000002)" \
  --customers "$customers" --seconds "$seconds" --concurrency "$concurrency" \
  --server-pid "$pid" --extra "$extra" --report "target/bench/report-$backend.json" > /dev/null
echo "webhooks on $backend…" >&2
timeout 1800 "$bench" webhooks --database "$url" --base "http://127.0.0.1:$port" --seconds "$seconds" \
  --concurrency "$concurrency" --report "target/bench/webhooks-$backend.json" > /dev/null

kill -TERM "$pid"
wait "$pid" || true
trap - EXIT
echo "report: target/bench/report-$backend.json" >&2
python3 - "target/bench/report-$backend.json" "target/bench/webhooks-$backend.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["webhooks"] = w = json.load(open(sys.argv[2]))
print(f"\n{r['backend']}: {r['customers']} customers, {r['concurrency']} connections, {r['seconds_per_scenario']} s per scenario")
print(f"{'scenario':<30}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
for section in ("service", "store"):
    for s in r[section]:
        print(f"{s['name']:<30}{s['rps']:>10.0f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['errors']:>8}")
print("\nratio service ÷ min(HTTP ceiling, store ceiling):")
for k, v in r["ratio_service_over_min_ceiling"].items():
    print(f"  {k:<28}{v:>6}")
print(f"search p99 growth (1M ÷ 10k): {r['search_p99_growth_1m_over_10k']}")
print(f"total=true p50 ÷ store p50:   {r['total_p50_over_store_p50']}")
print(f"import: {r.get('import_per_second')}/s   start-up: {r['startup_ms']} ms   "
      f"RSS idle {r['rss_idle_kib'] / 1024:.1f} MiB, after load {(r['rss_after_load_kib'] or 0) / 1024:.1f} MiB")
print("\nwebhooks:")
for s in w["paired_writes"]:
    print(f"  {s['name']:<36}{s['rps']:>10.0f}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['errors']:>8}")
lag, backlog = w["lag"], w["backlog"]
print(f"  lag at {lag['writes_per_second']:.0f} writes/s: p50 {lag['p50_ms']} ms, p99 {lag['p99_ms']} ms ({lag['events']} events)")
print(f"  backlog of {backlog['deliveries']}: drained at {backlog['deliveries_per_second']}/s")
print(f"  event log: {w['storage']}")

# The issue's targets, each with this run's figure; a shortfall is reported,
# not an error: on a shared host one run is one sample (see the README).
def at_most(value, limit): return value is not None and value <= limit
def at_least(value, limit): return value is not None and value >= limit
rss_after = r["rss_after_load_kib"] and round(r["rss_after_load_kib"] / 1024, 1)
targets = [(f"{name} ratio ≥ 0.5", v, at_least(v, 0.5)) for name, v in r["ratio_service_over_min_ceiling"].items()]
targets += [
    ("search p99 growth ≤ 2", r["search_p99_growth_1m_over_10k"], at_most(r["search_p99_growth_1m_over_10k"], 2)),
    ("total=true ÷ store ≤ 1.5", r["total_p50_over_store_p50"], at_most(r["total_p50_over_store_p50"], 1.5)),
    ("import ≥ 20,000/s", r.get("import_per_second"), at_least(r.get("import_per_second"), 20000)),
    ("RSS idle ≤ 32 MiB", round(r["rss_idle_kib"] / 1024, 1), at_most(r["rss_idle_kib"], 32 * 1024)),
    ("RSS after load ≤ 128 MiB", rss_after, at_most(rss_after, 128)),
    ("create, 1 subscription ÷ none ≥ 0.8", w["create_with_subscription_over_without"], at_least(w["create_with_subscription_over_without"], 0.8)),
    ("update, 1 subscription ÷ none ≥ 0.8", w["update_with_subscription_over_without"], at_least(w["update_with_subscription_over_without"], 0.8)),
    ("deliveries ≥ 2,000/s", backlog["deliveries_per_second"], at_least(backlog["deliveries_per_second"], 2000)),
    ("delivery lag p99 ≤ 250 ms", lag["p99_ms"], at_most(lag["p99_ms"], 250)),
]
print("\ntargets:")
for name, value, met in targets:
    print(f"  {'met  ' if met else 'SHORT'}  {name:<36}{value}")
short = [name for name, _, met in targets if not met]
print(f"{len(targets) - len(short)} of {len(targets)} met" + (f"; short: {', '.join(short)}" if short else ""))
r["targets"] = [{"target": name, "value": value, "met": met} for name, value, met in targets]
json.dump(r, open(sys.argv[1], "w"), indent=2)
PY
