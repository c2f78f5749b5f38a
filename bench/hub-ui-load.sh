#!/usr/bin/env bash
# Latency of the hub's hosts page, host page and host API with 5,000 hosts in the inventory, under
# 50 concurrent clients (issue 3's goal: p95 < 100 ms), measured with wrk from Debian.
#
# The script builds sage, starts `sage hub` on a fresh state store (SQLite by default, or a new
# PostgreSQL database with -s postgres), creates an API token, and seeds through the REST API
# (bench/seed) 50 clients x 100 hosts with two sites each, roles, tags and addresses: per client
# 4 hosts point at live synthetic agents (bench/ingest serve -plausible: a real `sage agent` scrape,
# captured at the start, with values a healthy host shows: counters at their rate since boot,
# gauges within 5%; -m serves the ingest benchmark's every-sample-moves values instead, under which
# the rule pack holds thousands of alerts no real host raises), 2 at closed ports (down, scrape
# errors), 2 await approval, 1 is retired and the rest are active without an agent (unmonitored).
# The hub scrapes every 15 s.
# After a few scrape intervals (so that the charts and health figures have data), wrk runs against
# each endpoint in turn with the API token as a bearer token (the UI accepts it as the API does),
# rotating through the host ids for the per-host pages. For each run it prints wrk's latency
# percentiles, requests per second and non-2xx answers, and CPU time (utime+stime from
# /proc/PID/stat) per request: the hub's (hub_ms/req), the same net of what the hub spends idle
# (scraping, health), measured for 15 s before the runs (hub_net_ms), and with PostgreSQL that of
# the database's backends (pg_ms/req), with the number of backends the hub's pool opened.
#
#   bench/hub-ui-load.sh [-s sqlite|postgres] [-d SECONDS] [-c CONNECTIONS] [-t THREADS] [-w WAIT_S] [-o ONLY] [-p] [-b SAGE] [-a EVAL] [-i IDLE_S] [-m]
#
# Defaults: sqlite, 30 s per endpoint, 50 connections, 2 threads, 45 s after seeding. -o runs only
# the endpoints whose name contains ONLY. -p also records `perf record -g` of the hub during each
# run into hub-ui-load-NAME.perf.data in the current directory. -b runs the given sage binary
# instead of building one from the tree, so that two builds (before and after a change) can be
# measured in turn under the same load. -a sets alerting.evaluation_interval (default: the hub's
# own, 1s), to tell the pages' cost from the rule evaluation's that runs beside them. -i sets how
# long the idle hub's CPU is measured before the runs (default: one scrape interval); with -p that
# window is recorded too (hub-ui-load-idle.perf.data). The alerts the rules hold at that point
# (count of ALERTS by alert name and state) are printed, since each active alert costs the rule
# evaluation its template expansions every evaluation. -o none measures the idle hub only.
# Needs: wrk, curl, go; psql for -s postgres; perf for -p. Exits non-zero on a failed request or
# setup, not on missing the goal.
set -euo pipefail
backend=sqlite duration=30 conns=50 threads=2 wait_s=45 only= perf= bin= eval= idle_s= plausible=-plausible
while getopts "s:d:c:t:w:o:pb:a:i:m" o; do
  case $o in
    s) backend=$OPTARG ;; d) duration=$OPTARG ;; c) conns=$OPTARG ;; t) threads=$OPTARG ;;
    w) wait_s=$OPTARG ;; o) only=$OPTARG ;; p) perf=1 ;; b) bin=$(realpath "$OPTARG") ;; a) eval=$OPTARG ;;
    i) idle_s=$OPTARG ;; m) plausible= ;;
    *) sed -n '22,35p' "$0" >&2; exit 2 ;;
  esac
done
case $backend in sqlite | postgres) ;; *) echo "-s: sqlite or postgres" >&2; exit 2 ;; esac
outdir=$PWD
cd "$(dirname "$0")/.."
for c in wrk curl go; do command -v $c >/dev/null || { echo "needs: $c" >&2; exit 1; }; done
[[ $backend == postgres ]] && { command -v psql >/dev/null || { echo "needs: psql" >&2; exit 1; }; }
[[ -n $perf ]] && { command -v perf >/dev/null || { echo "needs: perf" >&2; exit 1; }; }

# Ports away from bench/hub-ingest-vs-prometheus.sh's, so that both can run on one machine.
hub_addr=127.0.0.1:19490 agent_addr=127.0.0.1:19489 up_base=19500 down_base=19800
clients=50 per_client=100 up_per_client=4 down_per_client=2 interval=15
n_up=$((clients * up_per_client))
pg_url=postgres://postgres@127.0.0.1:5432 pg_db=
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n $pg_db ]]; then psql -q "$pg_url/postgres" -c "DROP DATABASE IF EXISTS $pg_db" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "hub-ui-load: $*" >&2; exit 1; }

# Nothing may listen on the closed ports, and the others must be free.
listening=$(ss -Htln | awk '{print $4}' | sed 's/.*://' | sort -u)
for p in $(seq "$down_base" $((down_base + clients * down_per_client - 1))) $(seq "$up_base" $((up_base + n_up - 1))) 19489 19490; do
  grep -qx "$p" <<<"$listening" && fail "port $p is in use"
done

# Plain go build: -trimpath would recompile the Prometheus packages instead of using the cache.
if [[ -n $bin ]]; then cp "$bin" "$work/sage"; else go build -o "$work/sage" ./cmd/sage; fi
go build -o "$work/ingest" ./bench/ingest
go build -o "$work/seed" ./bench/seed
hz=$(getconf CLK_TCK)
accept='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# PostgreSQL backends serving this run's database, and their CPU ticks ("pid ticks" lines).
pg_ticks() {
  ps -eo pid=,args= | awk -v db="$pg_db" '$2 == "postgres:" && index($0, " " db " ") {print $1}' |
    while read -r p; do
      # A backend that exits between ps and the read is no error.
      if t=$(cpu_ticks "$p" 2>/dev/null); then echo "$p $t"; fi
    done
}
wait_up() {
  for _ in $(seq 300); do curl -fs "http://$1" -o /dev/null && return 0; sleep 0.1; done
  fail "not up: $1"
}

# One real agent scrape, in both formats the agent negotiates, then the agent goes.
"$work/sage" agent --listen "$agent_addr" --state-dir "$work/agent-state" --log.level warn & pids+=($!)
wait_up "$agent_addr/metrics"
sleep 1
curl -fs --compressed -H "Accept: $accept" "http://$agent_addr/metrics" -o "$work/om.txt"
curl -fs --compressed "http://$agent_addr/metrics" -o "$work/text.txt"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'
"$work/ingest" serve $plausible -om "$work/om.txt" -text "$work/text.txt" -targets "$n_up" -base-port "$up_base" >"$work/serve.log" & pids+=($!)
wait_up "127.0.0.1:$up_base/metrics"; wait_up "127.0.0.1:$((up_base + n_up - 1))/metrics"

dsn=
if [[ $backend == postgres ]]; then
  pg_db=sage_uiload_$$
  psql -q "$pg_url/postgres" -c "CREATE DATABASE $pg_db" >/dev/null
  dsn="$pg_url/$pg_db?sslmode=disable"
fi
cat >"$work/hub.yml" <<EOF
listen: $hub_addr
data_dir: $work/data
state:
  dsn: "$dsn"
metrics:
  scrape_interval: ${interval}s
EOF
if [[ -n $eval ]]; then printf 'alerting:\n  evaluation_interval: %s\n' "$eval" >>"$work/hub.yml"; fi
SAGE_ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64) "$work/sage" hub --config "$work/hub.yml" --log.level warn >"$work/hub.log" 2>&1 & pids+=($!)
phub=${pids[-1]}
wait_up "$hub_addr/readyz"
"$work/sage" token create --config "$work/hub.yml" --name bench >"$work/token" 2>/dev/null
token=$(cat "$work/token")
auth="Authorization: Bearer $token"

"$work/seed" -hub "http://$hub_addr" -token-file "$work/token" -clients "$clients" -hosts "$per_client" \
  -up "$up_per_client" -up-base-port "$up_base" -down "$down_per_client" -down-base-port "$down_base" \
  -ids "$work/ids" -up-ids "$work/up-ids"
ids=$(wc -l <"$work/ids")
[[ $ids -eq $((clients * per_client)) ]] || fail "seeded $ids hosts, not $((clients * per_client))"

echo "waiting ${wait_s}s for scrapes (interval ${interval}s) and health figures"
sleep "$wait_s"
# The hosts' health as the API reports it: the live agents must be up, with CPU figures.
for off in $(seq 0 1000 $((ids - 1))); do curl -fs -H "$auth" "http://$hub_addr/api/v1/hosts?limit=1000&offset=$off"; done >"$work/all.json"
health=$(grep -o '"state":"[a-z]*"' "$work/all.json" | sed 's/"state":"//; s/"//' | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $2; sep = ", "}')
with_cpu=$(grep -Eo '"cpu":-?[0-9]' "$work/all.json" | wc -l || true)
n_upseen=$(grep -o '"state":"up"' "$work/all.json" | wc -l || true)
(( n_upseen >= n_up * 9 / 10 )) || fail "only $n_upseen of $n_up hosts with live agents are up ($health)"
idle_s=${idle_s:-$interval}
if [[ -n $perf ]]; then
  perf record -q -g -p "$phub" -o "$outdir/hub-ui-load-idle.perf.data" -- sleep "$idle_s" 2>/dev/null & pperf=$!
fi
c0=$(cpu_ticks "$phub"); sleep "$idle_s"; idle=$(( $(cpu_ticks "$phub") - c0 ))
[[ -n $perf ]] && wait "$pperf" 2>/dev/null
idle_rate=$(awk -v t="$idle" -v hz="$hz" -v s="$idle_s" 'BEGIN {printf "%.4f", t / hz / s}')
# What the rules hold: every pending or firing alert has its labels and annotations expanded at
# each evaluation of its rule.
alerts=$(curl -fs -H "$auth" "http://$hub_addr/prometheus/api/v1/query" --data-urlencode 'query=count by (alertname, alertstate) (ALERTS)' |
  grep -o '"alertname":"[^"]*","alertstate":"[^"]*"},"value":\[[^,]*,"[0-9]*"' |
  sed 's/"alertname":"\([^"]*\)","alertstate":"\([^"]*\)"},"value":\[[^,]*,"\([0-9]*\)"/\3 \1 \2/' | sort -rn |
  awk '{n += $1; s = s sep $1 " " $2 " (" $3 ")"; sep = ", "} END {printf "%d: %s", n, s}') || alerts="(query failed)"

first_id=$(head -1 "$work/ids") first_up=$(head -1 "$work/up-ids")
# name | path wrk asks for (also checked with curl first) | ids file | path template
endpoints=(
  "ui-hosts|/hosts||"
  "ui-hosts-page60|/hosts?page=60||"
  "ui-hosts-search|/hosts?q=db-0||"
  "ui-hosts-health|/hosts?health=down||"
  "ui-host-any|/hosts/$first_id|$work/ids|/hosts/%s"
  "ui-host-up|/hosts/$first_up|$work/up-ids|/hosts/%s"
  "ui-overview|/||"
  "ui-clients|/clients||"
  "api-hosts|/api/v1/hosts?limit=100||"
  "api-host|/api/v1/hosts/$first_id|$work/ids|/api/v1/hosts/%s"
)

echo
echo "$(date -u +%FT%TZ) $(uname -r), $(nproc) cores, load average$(uptime | sed 's/.*load average//'); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "state: $backend; $ids hosts, health: $health; $with_cpu with usage figures; alerting evaluation ${eval:-default}; agent values $([[ -n $plausible ]] && echo plausible || echo "moving (-m)");" \
  "hub idle CPU $(awk -v r="$idle_rate" 'BEGIN {printf "%.1f%%", r * 100}') of a core over ${idle_s}s; wrk -t$threads -c$conns -d${duration}s"
echo "active alerts $alerts"
pgcol=; [[ $backend == postgres ]] && pgcol=pg_ms/req
printf '%-16s %8s %8s %8s %8s %8s %8s %8s %6s %11s %10s %9s\n' endpoint p50_ms p90_ms p95_ms p99_ms max_ms req/s requests errors hub_ms/req hub_net_ms $pgcol
status=0
for e in "${endpoints[@]}"; do
  IFS='|' read -r name path idfile tmpl <<<"$e"
  [[ -n $only && $name != *"$only"* ]] && continue
  code=$(curl -s -o "$work/check.html" -w '%{http_code}' -H "$auth" "http://$hub_addr$path")
  if [[ $code != 200 ]]; then
    echo "$name: GET $path answered $code" >&2; head -c 300 "$work/check.html" >&2; echo >&2; status=1; continue
  fi
  if [[ -n $perf ]]; then
    perf record -q -g -p "$phub" -o "$outdir/hub-ui-load-$name.perf.data" -- sleep "$duration" 2>/dev/null & pperf=$!
  fi
  if [[ $backend == postgres ]]; then
    # Backends come and go with the hub's connection pool, so they are sampled through the run:
    # a backend's CPU after its last sample is missed.
    pg_ticks >"$work/pg0"
    (while :; do pg_ticks; sleep 0.5; done) >"$work/pg1" & psampler=$!
  fi
  c0=$(cpu_ticks "$phub")
  out=$(wrk -t"$threads" -c"$conns" -d"${duration}s" --timeout 30s -H "$auth" -s bench/hub-ui-load.lua \
    "http://$hub_addr$path" -- "$idfile" "$tmpl")
  ticks=$(( $(cpu_ticks "$phub") - c0 ))
  pgt=
  if [[ $backend == postgres ]]; then
    kill "$psampler"; wait "$psampler" 2>/dev/null || true; pg_ticks >>"$work/pg1"
    pgt=$(awk 'NR == FNR {b[$1] = $2; next} $2 > m[$1] {m[$1] = $2} END {for (p in m) s += m[p] - b[p]; print s + 0}' "$work/pg0" "$work/pg1")
    pg_new=$(awk 'NR == FNR {b[$1] = 1; next} !($1 in b) && !($1 in n) {n[$1] = 1; c++} END {print c + 0}' "$work/pg0" "$work/pg1")
  fi
  [[ -n $perf ]] && wait "$pperf" 2>/dev/null
  res=$(grep '^RESULT ' <<<"$out") || { echo "$out" >&2; fail "$name: no result from wrk"; }
  read -r _ p50 p90 p95 p99 pmax rps reqs non2xx errs <<<"$res"
  awk -v n="$name" -v p50="$p50" -v p90="$p90" -v p95="$p95" -v p99="$p99" -v pmax="$pmax" -v rps="$rps" -v reqs="$reqs" \
    -v bad="$((non2xx + errs))" -v t="$ticks" -v hz="$hz" -v idle="$idle_rate" -v d="$duration" -v pgt="$pgt" 'BEGIN {
    cpu = t * 1000 / hz; printf "%-16s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8d %6d %11.2f %10.2f",
      n, p50, p90, p95, p99, pmax, rps, reqs, bad, cpu / reqs, (cpu - idle * d * 1000) / reqs
    if (pgt != "") printf " %9.2f", pgt * 1000 / hz / reqs
    printf "\n" }'
  # Connections the hub's pool opened (and closed) during the run: each is a PostgreSQL fork.
  [[ $backend == postgres && $pg_new -gt 0 ]] && echo "  $name: $pg_new new PostgreSQL backends during the run"
  if (( non2xx + errs > 0 )); then
    echo "  $name: $non2xx non-2xx answers, $errs socket errors or timeouts" >&2; status=1
  fi
done
echo "hub RSS after the runs: $(awk -v k="$(rss_kb "$phub")" 'BEGIN {printf "%.1f MB", k / 1024}'); load average$(uptime | sed 's/.*load average//')"
# wrk drops its connections at the end of each run, with requests in flight: the hub logs those
# as "context canceled"; anything else is worth a look.
cancelled=$(grep -c 'level=ERROR.*context canceled' "$work/hub.log" || true)
[[ $cancelled -gt 0 ]] && echo "hub log: $cancelled errors for requests that wrk abandoned at the end of a run (context canceled)"
if grep 'level=ERROR' "$work/hub.log" | grep -qv 'context canceled'; then
  echo "hub logged errors:" >&2; grep 'level=ERROR' "$work/hub.log" | grep -v 'context canceled' | head -5 >&2
fi
exit $status
