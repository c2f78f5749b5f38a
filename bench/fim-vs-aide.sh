#!/bin/sh
# Side by side: internal/fim (bench/fimbench) against Debian's AIDE on the same copy of a tree, with
# the same attributes (type, mode, inode, uid, gid, size, mtime, ctime, link target) and SHA-256 only.
# Measures wall time, CPU (user+sys) and peak RSS with /usr/bin/time -v for:
#   1. the initial baseline (aide --init vs a scan with an empty state directory),
#   2. a re-check with no change (aide --check vs a scan against that baseline).
# The page cache is warm for both (each tool reads the tree once before it is timed).
#
# Usage: bench/fim-vs-aide.sh [SRC] [FILES]     (defaults: /usr 100000)
# Env: AIDE_WORKERS (AIDE's num_workers, default 1 as Debian ships it; try 2 for parity),
#      FIM_WORKERS (0: GOMAXPROCS), KEEP=1 to keep the work directory.
set -eu
SRC=${1:-/usr}
FILES=${2:-100000}
AIDE_WORKERS=${AIDE_WORKERS:-1}
FIM_WORKERS=${FIM_WORKERS:-0}
command -v aide >/dev/null || { echo "aide is missing: apt-get install -y aide" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 1; }
cd "$(dirname "$0")/.."

WORK=$(mktemp -d /tmp/fim-vs-aide.XXXXXX)
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
TREE=$WORK/tree
mkdir -p "$TREE" "$WORK/aide" "$WORK/fim"

echo "copying the first $FILES entries of $SRC to $TREE"
find "$SRC" -xdev \( -type f -o -type d -o -type l \) 2>/dev/null | head -n "$FILES" >"$WORK/list"
tar -cf - --no-recursion -T "$WORK/list" 2>/dev/null | tar -xf - -C "$TREE"
ENTRIES=$(find "$TREE" | wc -l)
echo "entries: $ENTRIES ($(find "$TREE" -type f | wc -l) files, $(du -sh "$TREE" | cut -f1))"
find "$TREE" -type f -print0 | xargs -0 cat >/dev/null # warm the page cache

cat >"$WORK/aide.conf" <<CONF
database_in=file:$WORK/aide/aide.db
database_out=file:$WORK/aide/aide.db.new
gzip_dbout=no
num_workers=$AIDE_WORKERS
report_url=file:$WORK/aide/report
R = p+ftype+i+u+g+s+m+c+l+sha256
$TREE R
CONF

go build -o "$WORK/fimbench" ./bench/fimbench

measure() { # label command...
	label=$1
	shift
	/usr/bin/time -v -o "$WORK/time.$label" "$@" >"$WORK/out.$label" 2>&1 || true
	wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time.$label")
	user=$(sed -n 's/.*User time (seconds): //p' "$WORK/time.$label")
	sys=$(sed -n 's/.*System time (seconds): //p' "$WORK/time.$label")
	rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time.$label")
	secs=$(echo "$wall" | awk -F: '{ if (NF == 3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
	printf '%-14s wall %7.2f s  cpu %7.2f s (user %s, sys %s)  peak RSS %6d KiB  %8.0f entries/s\n' \
		"$label" "$secs" "$(echo "$user + $sys" | bc)" "$user" "$sys" "$rss" "$(echo "$ENTRIES / $secs" | bc -l)"
}

echo "== initial baseline"
measure aide-init aide --config "$WORK/aide.conf" --init
mv "$WORK/aide/aide.db.new" "$WORK/aide/aide.db"
measure fim-baseline "$WORK/fimbench" -tree "$TREE" -state "$WORK/fim" -workers "$FIM_WORKERS"
sed 's/^/    /' "$WORK/out.fim-baseline"

echo "== re-check, no change"
measure aide-check aide --config "$WORK/aide.conf" --check
measure fim-check "$WORK/fimbench" -tree "$TREE" -state "$WORK/fim" -workers "$FIM_WORKERS"
sed 's/^/    /' "$WORK/out.fim-check"
grep -q 'AIDE found NO differences' "$WORK/aide/report" && echo "    aide: no differences" ||
	{ echo "    aide reported differences:"; head -20 "$WORK/aide/report"; }

echo "== paranoid full re-hash, no change (for reference: what --check costs AIDE every time)"
measure fim-paranoid "$WORK/fimbench" -tree "$TREE" -state "$WORK/fim" -workers "$FIM_WORKERS" -paranoid
sed 's/^/    /' "$WORK/out.fim-paranoid"
echo "baseline sizes: aide $(du -k "$WORK/aide/aide.db" | cut -f1) KiB, fim $(du -k "$WORK/fim" | cut -f1) KiB"
