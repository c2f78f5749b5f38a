#!/usr/bin/env bash
# Breach-to-notification latency of the hub and of Prometheus + Alertmanager, side by side on the
# same breaches (issue 4). bench/alertlat is the driver; see its doc comment for the method.
#
# One in-process exporter serves BREACHES synthetic hosts (one gauge each), scraped by the hub
# (`sage hub`, hosts in its inventory, its default evaluation_interval 1s, a watermark rule with
# for: 0s, a policy that mails L1 at once) and by Debian's prometheus at the same interval (two
# rule groups: interval 1s, and Prometheus's default 1m) feeding Debian's alertmanager with its
# default timers (group_wait 30s, group_interval 5m, repeat_interval 4h). Every mail goes to one
# in-process SMTP server (emersion/go-smtp). Each breach flips one host above its watermark;
# latency runs from the first scrape that carried the breaching value to the end of the mail's
# DATA. All on loopback, on free ports.
#
#   BREACHES=40 GAP=4s DEFAULT_PEER=1 KEEP=0 bash bench/alert-latency.sh
#
# BREACHES: number of breaches (one host each, default 40). GAP: time between breach starts
# (plus up to 2 s of jitter). DEFAULT_PEER=0 leaves out the 1m group (each breach then lasts
# ~32 s instead of up to ~95 s). KEEP=1 keeps the working directory (configs, logs, hub state).
# With the defaults the breaches take about 5 minutes, plus the builds.
# Needs: go, prometheus and prometheus-alertmanager (Debian packages).
set -euo pipefail
breaches=${BREACHES:-40} gap=${GAP:-4s} default_peer=${DEFAULT_PEER:-1} keep=${KEEP:-0}
cd "$(dirname "$0")/.."
command -v prometheus >/dev/null || { echo "needs: apt-get install prometheus" >&2; exit 1; }
am=$(command -v prometheus-alertmanager || command -v alertmanager || true)
[[ -n $am ]] || { echo "needs: apt-get install prometheus-alertmanager" >&2; exit 1; }

bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/sage" ./cmd/sage
go build -o "$bin/alertlat" ./bench/alertlat
args=(-sage "$bin/sage" -prometheus "$(command -v prometheus)" -alertmanager "$am" -breaches "$breaches" -gap "$gap")
[[ $default_peer == 0 ]] && args+=(-default=false)
[[ $keep == 1 ]] && args+=(-keep)
"$bin/alertlat" "${args[@]}"
