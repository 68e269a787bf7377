#!/usr/bin/env bash
# Downsampling at scale: one raw block of SERIES series covering HOURS (one block, as a
# compactor's 2d block is), downsampled to 5m by `strata downsample`, once per scrape
# interval (samples per series double from one to the next; the heap should not).
#
#   bash benches/downsample_scale.sh [SERIES] [HOURS] [INTERVALS]
#
# Defaults: 200000 series, 48h, INTERVALS="30s 15s". Reports the block's raw chunk data
# (bytes of chunks/), wall time, CPU time (user + system, all threads), throughput per
# core (chunk data / CPU time) and on the machine (chunk data / wall time), and peak
# heap (RssAnon, benches/peakmem.py). A 200k-series 48h block at 15s scrapes is about
# 11 GB; the script needs about that much free space under /tmp plus the output.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-200000}
HOURS=${2:-48}
INTERVALS=${3:-30s 15s}
WORK=$(mktemp -d /tmp/strata-ds.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cargo build --release --quiet
STRATA=$PWD/target/release/strata
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem/{print $2}') GiB"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $SERIES series x ${HOURS}h, one block"
for interval in $INTERVALS; do
  rm -rf "$WORK/in" "$WORK/out"
  $STRATA gen --output "$WORK/in" --series "$SERIES" --duration "${HOURS}h" --block-duration "${HOURS}h" \
    --scrape-interval "$interval" 2>/dev/null
  bytes=$(python3 -c 'import os,sys,glob; print(sum(os.path.getsize(f) for f in glob.glob(sys.argv[1]+"/*/chunks/*")))' "$WORK/in")
  samples=$(python3 -c 'import json,sys,glob; print(sum(json.load(open(f))["stats"]["numSamples"] for f in glob.glob(sys.argv[1]+"/*/meta.json")))' "$WORK/in")
  sync; sleep 3
  read -r secs _ anon cpu < <(python3 benches/peakmem.py --cpu --stderr "$WORK/ds.log" \
    "$STRATA" downsample "$WORK/in" --output "$WORK/out")
  grep -q . "$WORK/out"/01*/meta.json || { echo "no 5m block written:"; cat "$WORK/ds.log"; exit 1; }
  printf 'scrape %-6s %6.2f GB of chunks (%s samples): %6.2f s wall, %6.2f s CPU; %4.0f MB/s per core, %4.0f MB/s on %s cores; peak heap %s MiB\n' \
    "$interval" "$(echo "$bytes / 1000000000" | bc -l)" "$samples" "$secs" "$cpu" \
    "$(echo "$bytes / 1000000 / $cpu" | bc -l)" "$(echo "$bytes / 1000000 / $secs" | bc -l)" "$(nproc)" "$((anon / 1024))"
done
