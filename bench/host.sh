#!/usr/bin/env bash
# bench/host.sh: what `headroom host watch` itself costs the host it watches.
# Runs the real sampler (filesystems, block devices and every process's
# /proc/<pid>/io included) for DURATION at INTERVAL against this machine's /proc,
# then reads its CPU time (utime+stime from /proc/PID/stat) and peak memory
# (VmHWM) and reports CPU per sample and the share of one core at the default
# 5 s interval. The goal is under 1% of one core.
#
# Usage: bench/host.sh            (DURATION=60 INTERVAL=1s: 60 samples)
# A shorter interval than the default gives more samples in less time; the
# per-sample cost is what scales to the default.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60}
INTERVAL=${INTERVAL:-1s}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/headroom-bench-host.XXXXXX")
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

go build -o "$WORK/headroom" ./cmd/headroom
"$WORK/headroom" host watch --data "$WORK/rec" --interval "$INTERVAL" >"$WORK/out" 2>&1 &
PID=$!
sleep 2 # start-up (first reads of /proc, the recording's files) is not the steady cost
read -r T0 < <(awk '{print $14 + $15}' "/proc/$PID/stat")
sleep "$DURATION"
read -r T1 < <(awk '{print $14 + $15}' "/proc/$PID/stat")
HWM=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
kill -INT "$PID"
wait "$PID" || true
SAMPLES=$(grep -o 'recorded [0-9]*' "$WORK/out" | awk '{print $2}')
BYTES=$(du -sb "$WORK/rec" | awk '{print $1}')
TICK=$(getconf CLK_TCK)
python3 - "$T0" "$T1" "$TICK" "$DURATION" "$INTERVAL" "$HWM" "$RSS" "$SAMPLES" "$BYTES" <<'PY'
import sys
t0, t1, tick, dur = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
interval, hwm, rss, samples, size = sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
iv = float(interval.rstrip("s"))
cpu = (t1 - t0) / tick
per = cpu / (dur / iv)
print(f"sampled every {interval} for {dur:.0f} s: {cpu:.2f} CPU s, {per*1000:.2f} ms of CPU per sample")
print(f"at the default 5 s interval: {per/5*100:.3f}% of one core")
print(f"memory: RSS {rss/1024:.1f} MiB, peak {hwm/1024:.1f} MiB; recording {size/ max(samples,1):.0f} bytes per sample ({samples} samples)")
PY
