#!/usr/bin/env bash
# Side-by-side cost of `sage agent` and Debian's prometheus-node-exporter on this machine.
#
# Both run at once; the script scrapes them alternately, as Prometheus would (its Accept header,
# gzip, and a kept-alive connection: curl makes ten transfers per connection), and reads each
# process's CPU time (utime+stime from /proc/PID/stat) before and after, so the figure is CPU
# milliseconds per scrape, in one run, as ratios: these machines are noisy.
#
#   bench/agent-vs-node-exporter.sh [SCRAPES]        (default 300; needs prometheus-node-exporter)
#
# Two pairs are measured:
#   same-families: both expose only cpu, loadavg, meminfo, stat, filesystem, diskstats, netdev
#   defaults:      node_exporter's default collector set against sage's default set
set -euo pipefail
n=${1:-300}
cd "$(dirname "$0")/.."
command -v prometheus-node-exporter >/dev/null || { echo "needs: apt-get install prometheus-node-exporter" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs: curl" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -trimpath -tags agentonly -ldflags=-s -o "$work/sage" ./cmd/sage  # the agent-only build hosts run
hz=$(getconf CLK_TCK)
accept='Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1'

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

wait_up() {
  for _ in $(seq 100); do curl -fs "http://$1/metrics" -o /dev/null && return 0; sleep 0.1; done
  echo "not up: $1" >&2; exit 1
}

# scrape10 ADDR: ten scrapes over one kept-alive connection.
scrape10() {
  local args=()
  for _ in 1 2 3 4 5 6 7 8 9 10; do args+=(-o /dev/null "http://$1/metrics"); done
  curl -fs --compressed -H "$accept" "${args[@]}"
}

# measure NAME_A PID_A ADDR_A NAME_B PID_B ADDR_B
measure() {
  local a=$1 pa=$2 aa=$3 b=$4 pb=$5 ab=$6
  for _ in $(seq 20); do   # warm up: first scrapes build caches and grow heaps
    curl -fs --compressed -H "$accept" "http://$aa/metrics" -o /dev/null
    curl -fs --compressed -H "$accept" "http://$ab/metrics" -o /dev/null
  done
  local sa=$(curl -fs "http://$aa/metrics" | grep -vc '^#') sb=$(curl -fs "http://$ab/metrics" | grep -vc '^#')
  local ca0=$(cpu_ticks "$pa") cb0=$(cpu_ticks "$pb")
  for _ in $(seq $((n / 10))); do
    scrape10 "$aa"
    scrape10 "$ab"
  done
  local ca=$(( $(cpu_ticks "$pa") - ca0 )) cb=$(( $(cpu_ticks "$pb") - cb0 ))
  local ra=$(rss_kb "$pa") rb=$(rss_kb "$pb")
  n=$(( n / 10 * 10 ))
  awk -v a="$a" -v b="$b" -v ca="$ca" -v cb="$cb" -v n="$n" -v hz="$hz" -v ra="$ra" -v rb="$rb" -v sa="$sa" -v sb="$sb" 'BEGIN {
    ma = ca * 1000 / hz / n; mb = cb * 1000 / hz / n
    printf "  %-34s %8.2f ms CPU/scrape  %6.1f MB RSS  %5d samples\n", a, ma, ra/1024, sa
    printf "  %-34s %8.2f ms CPU/scrape  %6.1f MB RSS  %5d samples\n", b, mb, rb/1024, sb
    if (mb > 0) printf "  ratio sage/node_exporter: CPU %.2fx, RSS %.2fx (%d scrapes each, CPU resolution %.0f ms)\n", ma/mb, ra/rb, n, 1000/hz
  }'
}

same="cpu loadavg meminfo stat filesystem diskstats netdev"
cat >"$work/same.yml" <<YML
collectors:
  disable: [$(comm -23 <("$work/sage" agent -h 2>&1 | sed -n 's/^Collectors: //p' | tr ', ' '\n\n' | grep . | sort) <(tr ' ' '\n' <<<"$same" | sort) | paste -sd, -)]
YML

start_sage() { "$work/sage" agent --listen "$1" --state-dir "$work/state-$2" ${3:+--config "$3"} --log.level warn & pids+=($!); }
start_node() { prometheus-node-exporter --web.listen-address="$1" "${@:2}" >/dev/null 2>&1 & pids+=($!); }

echo "$(date -u +%FT%TZ) $(uname -r), $(nproc) cores; $(prometheus-node-exporter --version 2>&1 | head -1)"
echo "same-families ($same):"
start_sage 127.0.0.1:19101 same "$work/same.yml"; ps=${pids[-1]}
start_node 127.0.0.1:19102 --collector.disable-defaults $(for c in $same; do printf -- '--collector.%s ' "$c"; done); pn=${pids[-1]}
wait_up 127.0.0.1:19101; wait_up 127.0.0.1:19102
measure "sage agent (same families)" "$ps" 127.0.0.1:19101 "node_exporter (same families)" "$pn" 127.0.0.1:19102

echo "defaults:"
start_sage 127.0.0.1:19103 default; ps=${pids[-1]}
start_node 127.0.0.1:19104; pn=${pids[-1]}
wait_up 127.0.0.1:19103; wait_up 127.0.0.1:19104
measure "sage agent (default set)" "$ps" 127.0.0.1:19103 "node_exporter (default set)" "$pn" 127.0.0.1:19104
