#!/usr/bin/env bash
# Probe engine throughput and CPU: `sage agent`'s /probe against Debian's
# prometheus-blackbox-exporter, on the same loopback targets, in one run.
#
# Targets: an HTTP server (bench/probeload serve) for http_2xx, the same server's port for
# tcp_connect, and 127.0.0.1 for icmp. For each kind the load driver (bench/probeload drive) calls
# each exporter's /probe?target=...&module=... with the same concurrency for the same time, in
# interleaved blocks (blackbox, sage, sage, blackbox, blackbox, ...) so that the machine's noise
# falls on both alike, and reads the exporter's CPU time (utime+stime of /proc/PID/stat) just
# before and after each block. Figures: probes/s (successful probes over the blocks' wall time),
# probes per CPU-second of the exporter, and their sage/blackbox ratios.
#
#   bench/probe-vs-blackbox.sh [-c CONC] [-d BLOCK_S] [-r ROUNDS] [-g GOMAXPROCS] [-k "icmp tcp http"]
#                              [-e CPUS] [-l CPUS] [-s SAGE_BINARY] [-N NICE] [-B]
#
# Defaults: 16 concurrent probes, 10 s blocks, 3 rounds (so 60 s a kind), GOMAXPROCS 1 for both
# exporters. Pinning (taskset): both exporters on CPUS -e (default 1), the load driver and the HTTP
# target on -l (default 0), so the driver's CPU never competes with the exporter measured; on a
# one-CPU machine nothing is pinned. -s takes a built sage instead of building the tree; -B runs
# blackbox alone (to check the harness). -N runs everything the script starts (both exporters, the
# driver, the target) at that nice value, e.g. -10, so that on a machine shared with other work
# they are not starved to their fair share of the CPUs; it changes nothing between the two. Needs: prometheus-blackbox-exporter (Debian), curl, go,
# taskset; root for ICMP (blackbox and sage both use raw sockets when unprivileged ICMP is off).
set -euo pipefail
conc=16 block=10 rounds=3 gmp=1 kinds="icmp tcp http" ecpus=1 lcpus=0 sage_bin= bb_only= nice=0
while getopts "c:d:r:g:k:e:l:s:N:B" o; do
  case $o in
    c) conc=$OPTARG ;; d) block=$OPTARG ;; r) rounds=$OPTARG ;; g) gmp=$OPTARG ;; k) kinds=$OPTARG ;;
    e) ecpus=$OPTARG ;; l) lcpus=$OPTARG ;; s) sage_bin=$(realpath "$OPTARG") ;; N) nice=$OPTARG ;; B) bb_only=1 ;;
    *) sed -n '13,24p' "$0" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.."
command -v prometheus-blackbox-exporter >/dev/null || { echo "needs: apt-get install prometheus-blackbox-exporter" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs: curl" >&2; exit 1; }
command -v taskset >/dev/null || { echo "needs: taskset (util-linux)" >&2; exit 1; }

bb_addr=127.0.0.1:19415 sage_addr=127.0.0.1:19416 target_addr=127.0.0.1:19417
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if [ "$(nproc)" -lt 2 ]; then
  pin_e=(nice -n "$nice") pin_l=(nice -n "$nice")
  pinning="not pinned (one CPU)"
else
  pin_e=(nice -n "$nice" taskset -c "$ecpus") pin_l=(nice -n "$nice" taskset -c "$lcpus")
  pinning="exporters on CPU $ecpus, load driver and HTTP target on CPU $lcpus"
fi
pinning+=", nice $nice"

go build -trimpath -ldflags=-s -o "$work/probeload" ./bench/probeload
if [ -z "$bb_only" ]; then
  if [ -n "$sage_bin" ]; then cp "$sage_bin" "$work/sage"; else
    go build -trimpath -tags agentonly -ldflags=-s -o "$work/sage" ./cmd/sage   # the agent-only build hosts run
  fi
fi
hz=$(getconf CLK_TCK)

wait_up() {
  for _ in $(seq 100); do curl -fs "http://$1" -o /dev/null && return 0; sleep 0.1; done
  echo "not up: $1" >&2; exit 1
}

"${pin_l[@]}" "$work/probeload" serve -listen "$target_addr" >/dev/null & pids+=($!)

# blackbox's shipped modules, with IPv4 preferred (the targets are IPv4 literals either way).
cat >"$work/blackbox.yml" <<'YML'
modules:
  http_2xx:
    prober: http
    http:
      preferred_ip_protocol: ip4
  tcp_connect:
    prober: tcp
    tcp:
      preferred_ip_protocol: ip4
  icmp:
    prober: icmp
    icmp:
      preferred_ip_protocol: ip4
YML
GOMAXPROCS=$gmp "${pin_e[@]}" prometheus-blackbox-exporter --config.file="$work/blackbox.yml" \
  --web.listen-address="$bb_addr" --log.level=warn >"$work/blackbox.log" 2>&1 & pids+=($!)
pbb=${pids[-1]}

if [ -z "$bb_only" ]; then
  # No collector: the agent serves /probe with its built-in modules and nothing else runs.
  cat >"$work/sage.yml" <<YML
collectors:
  disable: [$("$work/sage" agent -h 2>&1 | sed -n 's/^Collectors: //p')]
YML
  GOMAXPROCS=$gmp "${pin_e[@]}" "$work/sage" agent --listen "$sage_addr" --state-dir "$work/sage-state" \
    --config "$work/sage.yml" --runtime.gomaxprocs "$gmp" --log.level warn >"$work/sage.log" 2>&1 & pids+=($!)
  psage=${pids[-1]}
fi
wait_up "$target_addr/"; wait_up "$bb_addr/metrics"
[ -n "$bb_only" ] || wait_up "$sage_addr/metrics"

load() { cut -d' ' -f1-3 /proc/loadavg; }
target_of() {
  case $1 in
    icmp) echo 127.0.0.1 ;; tcp) echo "$target_addr" ;; http) echo "http://$target_addr/" ;;
  esac
}
module_of() { case $1 in icmp) echo icmp ;; tcp) echo tcp_connect ;; http) echo http_2xx ;; esac; }

# block NAME URL PID KIND SECONDS: one block of load; appends its line to $work/NAME.KIND.
block() {
  "${pin_l[@]}" "$work/probeload" drive -url "http://$2" -pid "$3" -target "$(target_of "$4")" \
    -module "$(module_of "$4")" -c "$conc" -d "${5}s" -label "$1" >>"$work/$1.$4"
}

echo "$(date -u +%FT%TZ) $(uname -r), $(nproc) CPUs, $pinning; GOMAXPROCS $gmp; $conc concurrent probes," \
  "$rounds rounds of ${block} s blocks per exporter and kind"
echo "blackbox: $(prometheus-blackbox-exporter --version 2>&1 | head -1)"
[ -n "$bb_only" ] || echo "sage: $("$work/sage" version 2>/dev/null | head -1 || echo built from the tree)"

names=(blackbox)
[ -n "$bb_only" ] || names+=(sage)
declare -A addr=([blackbox]=$bb_addr [sage]=$sage_addr) pid=([blackbox]=$pbb [sage]=${psage:-0})
for kind in $kinds; do
  la0=$(load)
  for n in "${names[@]}"; do block "$n" "${addr[$n]}" "${pid[$n]}" "$kind" 2 && : >"$work/$n.$kind"; done   # warm-up, discarded
  for ((r = 0; r < rounds; r++)); do
    if ((r % 2 == 0)); then order=("${names[@]}"); else order=(); for ((i = ${#names[@]} - 1; i >= 0; i--)); do order+=("${names[i]}"); done; fi
    for n in "${order[@]}"; do block "$n" "${addr[$n]}" "${pid[$n]}" "$kind" "$block"; done
  done
  echo "$kind: load average $la0 -> $(load)" >>"$work/loads"
done

# Sum each exporter's blocks per kind: successful probes, wall, exporter ticks, driver CPU.
sum() {
  awk -v hz="$hz" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    ok += v["ok"]; bad += v["fail"] + v["errors"]; wall += v["wall_s"]; t += v["exporter_ticks"]; d += v["driver_cpu_s"]; p99 = v["p99_ms"] > p99 ? v["p99_ms"] : p99 }
    END { printf "%d %d %.3f %.2f %.2f %.2f\n", ok, bad, wall, t / hz, d, p99 }' "$1"
}

echo
echo "per exporter (sums over the blocks): successful probes, failed, wall s, exporter CPU s, cores used, driver CPU s, worst block p99 ms"
for kind in $kinds; do
  for n in "${names[@]}"; do
    read -r ok bad wall cpu drv p99 < <(sum "$work/$n.$kind")
    awk -v n="$n" -v k="$kind" -v ok="$ok" -v bad="$bad" -v w="$wall" -v c="$cpu" -v d="$drv" -v p="$p99" \
      'BEGIN { printf "  %-5s %-9s %8d ok %6d failed %7.1f s %7.2f CPU-s %5.2f cores  driver %6.2f CPU-s  p99 %7.1f ms\n", k, n, ok, bad, w, c, c / w, d, p }'
    eval "r_${n}_${kind}=\"$ok $wall $cpu\""
  done
done
cat "$work/loads" | sed 's/^/  /'

echo
if [ -n "$bb_only" ]; then
  echo "| kind | blackbox probes/s | blackbox probes/CPU-s |"
  echo "|---|---|---|"
  for kind in $kinds; do
    eval "read -r ok wall cpu <<<\"\$r_blackbox_${kind}\""
    awk -v k="$kind" -v ok="$ok" -v w="$wall" -v c="$cpu" 'BEGIN { printf "| %s | %.0f | %.0f |\n", k, ok / w, (c > 0 ? ok / c : 0) }'
  done
  exit 0
fi
echo "| kind | blackbox probes/s | sage probes/s | ratio | blackbox probes/CPU-s | sage probes/CPU-s | ratio |"
echo "|---|---|---|---|---|---|---|"
for kind in $kinds; do
  eval "read -r bok bwall bcpu <<<\"\$r_blackbox_${kind}\""
  eval "read -r sok swall scpu <<<\"\$r_sage_${kind}\""
  awk -v k="$kind" -v bok="$bok" -v bw="$bwall" -v bc="$bcpu" -v sok="$sok" -v sw="$swall" -v sc="$scpu" 'BEGIN {
    br = bok / bw; sr = sok / sw; be = (bc > 0 ? bok / bc : 0); se = (sc > 0 ? sok / sc : 0)
    printf "| %s | %.0f | %.0f | **%.2fx** | %.0f | %.0f | **%.2fx** |\n", k, br, sr, (br > 0 ? sr / br : 0), be, se, (be > 0 ? se / be : 0) }'
done
