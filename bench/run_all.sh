#!/usr/bin/env bash
# Run every h5ss benchmark in sequence (about 23 minutes on a 2-core box).
# Usage: bash bench/run_all.sh            (from anywhere; PYTHON=... to pick the interpreter)
# Each benchmark prints its own numbers and a PASS/MISS line against its target; this
# script goes on after a failing one and exits non-zero if any of them failed to run.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
failed=()
for bench in ws_latency first_frame ws_viewers rtsp_readers rtmp_players rss rtc hls_latency hls_js hls_cpu snapshot search record_cpu playback hik_renewal audio_transcode rendition cloud_hop; do
    echo "=== bench/$bench.py ($(date +%H:%M:%S))"
    if ! timeout 300 "$PYTHON" "bench/$bench.py"; then
        failed+=("$bench")
    fi
    echo
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed to run: ${failed[*]}"
    exit 1
fi
echo "all benchmarks ran"
