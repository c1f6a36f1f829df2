#!/usr/bin/env bash
# Benchmark `headroom logs analyze` against GoAccess on the same generated
# combined log, in one run, on this machine: lines/s, wall time and peak
# memory of each, the throughput ratio, and headroom's peak memory on a
# quarter of the file (memory must not grow with the input).
#
#   bench/logs.sh            # 1 GiB log
#   SIZE=2GiB bench/logs.sh  # any genlog -size
#
# The log goes to $TMPDIR (default /tmp) and is deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-1GiB}
SEED=${SEED:-1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/headroom-bench-logs.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ ! -x /usr/bin/time ]; then
	echo "installing GNU time (for peak memory)" >&2
	sudo apt-get install -y time >/dev/null 2>&1 || apt-get install -y time >/dev/null
fi
command -v goaccess >/dev/null || { echo "goaccess is not installed (apt-get install goaccess)" >&2; exit 1; }

go build -o "$WORK/headroom" ./cmd/headroom
go build -o "$WORK/genlog" ./bench/genlog

LOG="$WORK/access.log"
echo "== generating $SIZE combined log (seed $SEED)" >&2
"$WORK/genlog" -size "$SIZE" -seed "$SEED" >"$LOG"
BYTES=$(stat -c %s "$LOG")
LINES=$(wc -l <"$LOG")
QUARTER="$WORK/quarter.log"
head -n $((LINES / 4)) "$LOG" >"$QUARTER"
cat "$LOG" >/dev/null # both tools start from a warm page cache

# measure NAME CMD...: runs CMD under GNU time, prints "wall_s maxrss_kb cpu_s"
# (cpu = user + sys: the machine may be shared, and CPU seconds are what a
# busy neighbour disturbs least).
measure() {
	local name=$1
	shift
	/usr/bin/time -f "%e %M %U %S" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" || {
		echo "$name failed:" >&2
		cat "$WORK/$name.err" >&2
		exit 1
	}
	tail -1 "$WORK/$name.time" | awk '{print $1, $2, $3 + $4}'
}

CORES=$(nproc)
echo "== headroom logs analyze ($CORES cores)" >&2
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
read -r HR_S HR_KB HR_CPU < <(measure headroom "$WORK/headroom" logs analyze "$LOG" --format combined --json --progress never)
echo "== goaccess $(goaccess --version | head -1 | awk '{print $3}') (same machine; GoAccess 1.7 parses on one thread)" >&2
read -r GA_S GA_KB GA_CPU < <(measure goaccess goaccess "$LOG" --log-format=COMBINED --no-global-config --no-progress -o "$WORK/goaccess.json")
echo "== headroom on a quarter of the file (memory flatness)" >&2
read -r Q_S Q_KB Q_CPU < <(measure quarter "$WORK/headroom" logs analyze "$QUARTER" --format combined --json --progress never)

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
HR_RECORDS=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["records"], d["malformed"])' "$WORK/headroom.out")
GA_VALID=$(python3 -c 'import json,sys; g=json.load(open(sys.argv[1]))["general"]; print(g["valid_requests"], g["failed_requests"])' "$WORK/goaccess.json")

python3 - "$BYTES" "$LINES" "$HR_S" "$HR_KB" "$HR_CPU" "$GA_S" "$GA_KB" "$GA_CPU" "$Q_S" "$Q_KB" "$Q_CPU" "$CORES" "$HR_RECORDS" "$GA_VALID" "$LOAD_BEFORE" "$LOAD_AFTER" <<'PY'
import sys
b, lines = int(sys.argv[1]), int(sys.argv[2])
hr_s, hr_kb, hr_cpu, ga_s, ga_kb, ga_cpu, q_s, q_kb, q_cpu = map(float, sys.argv[3:12])
cores = sys.argv[12]
hr_rec, ga_valid = sys.argv[13], sys.argv[14]
hr_lps, ga_lps = lines / hr_s, lines / ga_s
print(f"input: {b/2**30:.2f} GiB, {lines:,} lines of combined log, {cores} cores; load average {sys.argv[15]} before, {sys.argv[16]} after")
print(f"| tool | wall s | lines/s | MB/s | CPU s | lines per CPU s | peak RSS MiB |")
print(f"|---|---:|---:|---:|---:|---:|---:|")
for name, s, cpu, kb, n, size in [
    ("headroom logs analyze", hr_s, hr_cpu, hr_kb, lines, b),
    ("goaccess", ga_s, ga_cpu, ga_kb, lines, b),
    ("headroom, quarter of the input", q_s, q_cpu, q_kb, lines / 4, b / 4),
]:
    print(f"| {name} | {s:.2f} | {n/s:,.0f} | {size/s/1e6:,.0f} | {cpu:.2f} | {n/cpu:,.0f} | {kb/1024:.0f} |")
print(f"throughput ratio headroom/goaccess (wall lines/s): {hr_lps/ga_lps:.1f}x; per CPU second: {ga_cpu/hr_cpu:.1f}x")
print(f"peak memory, full vs quarter input: {hr_kb/1024:.0f} vs {q_kb/1024:.0f} MiB")
print(f"records/malformed (headroom): {hr_rec}; valid/failed (goaccess): {ga_valid}")
PY
