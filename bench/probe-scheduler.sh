#!/usr/bin/env bash
# The agent's continuous probe scheduler at scale: N ICMP targets (default 5,000) at one round per
# second, configured as the agent's `probes: targets:`. The targets are addresses of 127.0.0.0/8
# (127.1.x.y), which the loopback interface answers, all of them, from the kernel.
#
# Two runs, one agent each, with an ICMP module of one echo request per round and one of 5 requests
# 200 ms apart (-m "1 5"; count:spacing_ms pairs too, e.g. -m "1 10:50"). After the warm-up the
# script reads the agent's CPU time (utime+stime of /proc/PID/stat) and its scheduler counters
# (sage_probe_runs_total, _skipped_total, _failures_total, _packets_sent_total and _received_total,
# summed by bench/probeload metrics), waits the window, reads them again, and reports the cores used
# (CPU seconds / wall seconds), rounds completed per target, echo requests without a reply, RSS
# (VmRSS, and VmHWM: the peak), and how many targets have sage_probe_success 1 at the end.
#
#   bench/probe-scheduler.sh [-n TARGETS] [-w WARMUP_S] [-d WINDOW_S] [-m "1 5"] [-c CONCURRENCY]
#                            [-g GOMAXPROCS] [-s SAGE_BINARY] [-N NICE]
#
# Defaults: 5,000 targets, 15 s warm-up, 60 s window, concurrency 6,000 (probes.concurrency: a round
# of 5 requests 200 ms apart holds its slot ~0.8 s, so 5,000 targets a second need ~4,000 slots; the
# agent's default of 256 would skip most runs), the agent's own GOMAXPROCS default (1). The agent is
# not pinned. -s takes a built sage instead of building the tree. -N runs the agent at that nice
# value (e.g. -10): on a machine shared with other work, a GOMAXPROCS-1 agent gets about its fair
# share of the CPUs (2 CPUs / load 20 = 0.1 core), falls behind, and then skips runs and times out
# replies it has not read: the figure would be the machine's, not the agent's. Needs: curl, go;
# root (raw ICMP sockets when unprivileged ICMP is off; a negative nice).
set -euo pipefail
n=5000 warmup=15 window=60 modes="1 5:200" conc=6000 gmp= sage_bin= nice=0
while getopts "n:w:d:m:c:g:s:N:" o; do
  case $o in
    n) n=$OPTARG ;; w) warmup=$OPTARG ;; d) window=$OPTARG ;; m) modes=$OPTARG ;; c) conc=$OPTARG ;;
    g) gmp=$OPTARG ;; s) sage_bin=$(realpath "$OPTARG") ;; N) nice=$OPTARG ;;
    *) sed -n '14,25p' "$0" >&2; exit 2 ;;
  esac
done
((n <= 65000)) || { echo "at most 65,000 targets (127.1.0.1-127.254.255.254 by 250s)" >&2; exit 2; }
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { echo "needs: curl" >&2; exit 1; }

addr=127.0.0.1:19420
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -trimpath -ldflags=-s -o "$work/probeload" ./bench/probeload
if [ -n "$sage_bin" ]; then cp "$sage_bin" "$work/sage"; else
  go build -trimpath -tags agentonly -ldflags=-s -o "$work/sage" ./cmd/sage   # the agent-only build hosts run
fi
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# sock_drops PID: packets the kernel dropped because the receive queue of one of the process's ICMP
# sockets (raw, or ping sockets) was full: the drops column of /proc/net/{raw,raw6,icmp,icmp6}.
sock_drops() {
  find "/proc/$1/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null | tr -dc '0-9\n' >"$work/inodes"
  cat /proc/net/raw /proc/net/raw6 /proc/net/icmp /proc/net/icmp6 2>/dev/null |
    awk 'NR == FNR { own[$1] = 1; next } $10 in own { d += $NF } END { print d + 0 }' "$work/inodes" -
}
wait_up() {
  for _ in $(seq 100); do curl -fs "http://$1" -o /dev/null && return 0; sleep 0.1; done
  echo "not up: $1" >&2; exit 1
}
# counts FILE KEY: a key=value of probeload metrics' line.
kv() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

echo "$(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs; $n ICMP targets at 1 s, concurrency $conc," \
  "GOMAXPROCS ${gmp:-agent default}, nice $nice; ${warmup} s warm-up, ${window} s window"
table=()
for mode in $modes; do
  count=${mode%%:*} spacing=200
  [[ $mode == *:* ]] && spacing=${mode#*:}
  mod="icmp_c${count}"
  ((count == 1)) || mod+="_${spacing}ms"
  {
    echo "collectors:"
    echo "  disable: [$("$work/sage" agent -h 2>&1 | sed -n 's/^Collectors: //p')]"
    echo "probes:"
    echo "  concurrency: $conc"
    echo "  interval: 1s"
    echo "  modules:"
    echo "    $mod:"
    echo "      prober: icmp"
    echo "      icmp: {preferred_ip_protocol: ip4, count: $count, interval: ${spacing}ms}"
    echo "  targets:"
    for ((i = 0; i < n; i++)); do
      echo "  - {target: 127.$((1 + i / 62500)).$(((i / 250) % 250)).$((i % 250 + 1)), module: $mod}"
    done
  } >"$work/agent-$mod.yml"
  "$work/sage" agent --check-config --config "$work/agent-$mod.yml" --state-dir "$work/state-$mod" >/dev/null
  nice -n "$nice" "$work/sage" agent --listen "$addr" --state-dir "$work/state-$mod" --config "$work/agent-$mod.yml" \
    ${gmp:+--runtime.gomaxprocs "$gmp"} --log.level warn >"$work/agent-$mod.log" 2>&1 & pids+=($!)
  p=${pids[-1]}
  wait_up "$addr/healthz"
  sleep "$warmup"

  "$work/probeload" metrics -url "http://$addr/metrics" | grep "module=$mod " >"$work/m0" || true
  s0=$(date +%s.%N)   # the counters' time: the end of the scrape
  la0=$(load); c0=$(cpu_ticks "$p"); t0=$(date +%s.%N); d0=$(sock_drops "$p")
  sleep "$window"
  c1=$(cpu_ticks "$p"); t1=$(date +%s.%N); la1=$(load); d1=$(sock_drops "$p")
  rss=$(status_kb "$p" VmRSS) hwm=$(status_kb "$p" VmHWM)
  s1=$(date +%s.%N)   # the counters' time: the start of the scrape
  "$work/probeload" metrics -url "http://$addr/metrics" | grep "module=$mod " >"$work/m1" || true
  kill "$p"; wait "$p" 2>/dev/null || true; unset 'pids[-1]'

  targets=$(kv "$work/m1" targets) ok=$(kv "$work/m1" success)
  runs=$(( $(kv "$work/m1" runs) - $(kv "$work/m0" runs) ))
  skipped=$(( $(kv "$work/m1" skipped) - $(kv "$work/m0" skipped) ))
  failures=$(( $(kv "$work/m1" failures) - $(kv "$work/m0" failures) ))
  # Echo requests of the rounds recorded in the window that got no reply: on loopback every
  # request is answered, so any is the agent's (a round that ended before its replies were read).
  unanswered=$(( ($(kv "$work/m1" sent) - $(kv "$work/m0" sent)) - ($(kv "$work/m1" received) - $(kv "$work/m0" received)) ))
  row=$(awk -v m="$mod" -v c="$count" -v sp="$spacing" -v n="$n" -v tg="$targets" -v ok="$ok" -v runs="$runs" \
    -v sk="$skipped" -v f="$failures" -v dc="$((c1 - c0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" -v rss="$rss" -v hwm="$hwm" \
    -v s0="$s0" -v s1="$s1" -v la0="$la0" -v la1="$la1" -v drops="$((d1 - d0))" -v un="$unanswered" 'BEGIN {
      w = t1 - t0; cpu = dc / hz
      printf "| %s | %d | %d of %d | %.3f | %d | %d | %d | %d | %.1f s | **%.3f** | %.1f MB (peak %.1f) | %s -> %s |", (c == 1 ? "1" : c " x " sp " ms apart"), n, ok, tg, runs / n / (s1 - s0), sk, f, un, drops, cpu, cpu / w, rss / 1024, hwm / 1024, la0, la1 }')
  table+=("$row")
  echo "  $mod: runs $runs, skipped $skipped, failures $failures, $unanswered echo requests without a reply, $((d1 - d0)) echo replies dropped on a full socket receive queue in the window (failure reasons since the start: $(kv "$work/m1" reasons)); log: $(wc -l <"$work/agent-$mod.log") lines"
  [ -s "$work/agent-$mod.log" ] && head -5 "$work/agent-$mod.log" | sed 's/^/    /'
done

echo
echo "| echo requests per round | targets | sage_probe_success 1 at the end | rounds per target per second | skipped runs | failed probes | requests without a reply | replies dropped, socket queue full | agent CPU | cores used | agent RSS | load average |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${table[@]}"
