#!/usr/bin/env bash
# Side-by-side ingest cost of the hub's metric store (internal/metricstore, run by bench/ingest) and
# Debian's real prometheus binary, scraping the same N synthetic agents at the same interval.
#
# The agents are one process (bench/ingest serve) on N loopback ports, each serving a payload
# captured from a real `sage agent` on this machine, with every counter advancing and every gauge
# moving between scrapes, in OpenMetrics with gzip as the agent serves it. Both scrapers start
# together; after the warm-up the script reads each one's CPU time (utime+stime from
# /proc/PID/stat) and samples appended to its TSDB head
# (sum(prometheus_tsdb_head_samples_appended_total) from its own /metrics), waits the window, reads
# them again, and prints CPU microseconds per 1,000 samples for each and the ratio, in one run:
# these machines are noisy.
#
#   bench/hub-ingest-vs-prometheus.sh [-n TARGETS] [-i INTERVAL_S] [-d WINDOW_S] [-w WARMUP_S] [-p]
#
# Defaults: 100 targets, 5 s interval, 60 s window after a 15 s warm-up. -p also writes a 30 s CPU
# profile of the hub (taken inside the window) to bench-ingest-hub.pprof in the current directory.
# Needs: prometheus (Debian package), curl, go.
set -euo pipefail
n=100 interval=5 window=60 warmup=15 profile=
while getopts "n:i:d:w:p" o; do
  case $o in
    n) n=$OPTARG ;; i) interval=$OPTARG ;; d) window=$OPTARG ;; w) warmup=$OPTARG ;; p) profile=1 ;;
    *) sed -n '14,18p' "$0" >&2; exit 2 ;;
  esac
done
outdir=$PWD
cd "$(dirname "$0")/.."
command -v prometheus >/dev/null || { echo "needs: apt-get install prometheus" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs: curl" >&2; exit 1; }

base_port=19300 hub_addr=127.0.0.1:19290 prom_addr=127.0.0.1:19291 agent_addr=127.0.0.1:19289
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

go build -trimpath -ldflags=-s -o "$work/sage" ./cmd/sage
go build -trimpath -ldflags=-s -o "$work/ingest" ./bench/ingest
hz=$(getconf CLK_TCK)
accept='application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
appended() { curl -fs "http://$1/metrics" | awk '/^prometheus_tsdb_head_samples_appended_total/ {s += $NF} END {printf "%.0f\n", s}'; }
wait_up() {
  for _ in $(seq 100); do curl -fs "http://$1" -o /dev/null && return 0; sleep 0.1; done
  echo "not up: $1" >&2; exit 1
}

# One real agent scrape, in both formats the agent negotiates, then the agent goes.
"$work/sage" agent --listen "$agent_addr" --state-dir "$work/agent-state" --log.level warn & pids+=($!)
wait_up "$agent_addr/metrics"
sleep 1   # let every collector (process scan, kernel log) run once
curl -fs --compressed -H "Accept: $accept" "http://$agent_addr/metrics" -o "$work/om.txt"
curl -fs --compressed "http://$agent_addr/metrics" -o "$work/text.txt"
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'

"$work/ingest" serve -om "$work/om.txt" -text "$work/text.txt" -targets "$n" -base-port "$base_port" >"$work/serve.log" & pids+=($!)
pserve=${pids[-1]}
wait_up "127.0.0.1:$base_port/metrics"; wait_up "127.0.0.1:$((base_port + n - 1))/metrics"

{
  echo "global: {scrape_interval: ${interval}s, scrape_timeout: $((interval < 10 ? interval : 10))s}"
  echo "scrape_configs:"
  echo "- job_name: agents"
  echo "  static_configs:"
  echo "  - targets:"
  for ((j = 0; j < n; j++)); do echo "    - 127.0.0.1:$((base_port + j))"; done
} >"$work/prometheus.yml"

# Started together so that both see the same machine load for the whole run.
"$work/ingest" hub -targets "$n" -base-port "$base_port" -interval "${interval}s" -dir "$work/hub-tsdb" -listen "$hub_addr" >"$work/hub.log" 2>&1 & pids+=($!)
phub=${pids[-1]}
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-tsdb" \
  --web.listen-address="$prom_addr" --log.level=warn >"$work/prom.log" 2>&1 & pids+=($!)
pprom=${pids[-1]}
wait_up "$hub_addr/metrics"; wait_up "$prom_addr/metrics"

samples=$(grep -vc '^#' "$work/om.txt")
echo "$(date -u +%FT%TZ) $(uname -r), $(nproc) cores; $(prometheus --version 2>&1 | head -1); hub: metricstore on prometheus/prometheus $(go list -m -f '{{.Version}}' github.com/prometheus/prometheus)"
echo "$n targets x $samples samples (+ report series), every ${interval}s; warm-up ${warmup}s, window ${window}s"
sleep "$warmup"

ch0=$(cpu_ticks "$phub") cp0=$(cpu_ticks "$pprom") cs0=$(cpu_ticks "$pserve")
sh0=$(appended "$hub_addr") sp0=$(appended "$prom_addr")
if [[ -n $profile ]]; then
  curl -fs "http://$hub_addr/debug/pprof/profile?seconds=$((window < 30 ? window : 30))" -o "$outdir/bench-ingest-hub.pprof" &
fi
sleep "$window"
ch=$(( $(cpu_ticks "$phub") - ch0 )) cp=$(( $(cpu_ticks "$pprom") - cp0 )) cs=$(( $(cpu_ticks "$pserve") - cs0 ))
sh=$(( $(appended "$hub_addr") - sh0 )) sp=$(( $(appended "$prom_addr") - sp0 ))
rh=$(rss_kb "$phub") rp=$(rss_kb "$pprom")
[[ -n $profile ]] && { wait %curl 2>/dev/null || true; echo "hub profile: $outdir/bench-ingest-hub.pprof"; }

awk -v ch="$ch" -v cp="$cp" -v cs="$cs" -v sh="$sh" -v sp="$sp" -v rh="$rh" -v rp="$rp" -v hz="$hz" -v w="$window" 'BEGIN {
  if (sh <= 0 || sp <= 0) { print "no samples appended: hub " sh ", prometheus " sp > "/dev/stderr"; exit 1 }
  uh = ch * 1e6 / hz / (sh / 1000); up = cp * 1e6 / hz / (sp / 1000)
  printf "  %-22s %8.1f us CPU/1k samples  %7.2f s CPU  %9d samples  %6.1f MB RSS\n", "hub (metricstore)", uh, ch / hz, sh, rh / 1024
  printf "  %-22s %8.1f us CPU/1k samples  %7.2f s CPU  %9d samples  %6.1f MB RSS\n", "prometheus", up, cp / hz, sp, rp / 1024
  printf "  ratio hub/prometheus: CPU per sample %.2fx, RSS %.2fx (CPU resolution %.0f ms; targets process used %.2f s CPU in the %d s window)\n", uh / up, rh / rp, 1000 / hz, cs / hz, w
}'
