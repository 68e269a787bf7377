#!/usr/bin/env bash
# Make testdata/native-histograms/: a block holding native histograms (integer,
# float and gauge), written by Prometheus 2.42 itself.
#
# Route: start a throw-away Prometheus on loopback with no scrape jobs and an
# empty data directory, and remote-write to it a fixed data set of native
# histograms and floats (scripts/native_histograms.py) spanning 3h19m from
# 2023-11-14T22:00:00Z, in time order. The head accepts old timestamps while it is
# empty; once it spans more than 3h, Prometheus compacts its first 2h into a block,
# exactly as in normal operation. While the server still runs, record what its
# query API returns for the block's range; then copy the block out.
#
# Why not a snapshot (POST /api/v1/admin/tsdb/snapshot?skip_head=false): 2.42
# re-encodes the head's open chunks for a snapshot and refuses a gauge histogram
# whose counts go down ("snapshot head block: populate block: chunk iter: iterate
# chunk while re-encoding: detected unexpected counter reset in histogram").
# Head compaction writes closed chunks as they are.
#
# Outputs:
#   testdata/native-histograms/<ULID>/           the block Prometheus compacted
#   testdata/native-histograms.expected.json     what /api/v1/query returned (raw samples)
#   testdata/native-histograms.dump.txt          `promtool tsdb dump` of the block
# (`python3 scripts/native_histograms.py sent --out FILE` prints what was sent.)
#
# The data is the same on every run; the block's ULID is new each time. Needs:
# prometheus and promtool 2.42 (scripts/install-test-deps.sh), python3 (standard
# library only), a free loopback port (PORT, default: one picked at random).
set -euo pipefail

cd "$(dirname "$0")/.."
PROMETHEUS=${PROMETHEUS:-prometheus}
PROMTOOL=${PROMTOOL:-promtool}
PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
URL="http://127.0.0.1:$PORT"
OUT=testdata/native-histograms

echo "using: $("$PROMETHEUS" --version 2>&1 | head -1)"

work=$(mktemp -d)
prom_pid=""
cleanup() {
  if [[ -n $prom_pid ]] && kill -0 "$prom_pid" 2>/dev/null; then
    echo "stopping prometheus (pid $prom_pid)"
    kill "$prom_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$prom_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$prom_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/prometheus.yml" <<'EOF'
# No scrape jobs: the only data is what we remote-write.
global:
  scrape_interval: 15s
EOF

echo "+ prometheus --enable-feature=native-histograms --web.enable-remote-write-receiver --storage.tsdb.path=$work/data --web.listen-address=127.0.0.1:$PORT --config.file=$work/prometheus.yml"
"$PROMETHEUS" \
  --enable-feature=native-histograms \
  --web.enable-remote-write-receiver \
  --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$PORT" \
  --config.file="$work/prometheus.yml" \
  > "$work/prometheus.log" 2>&1 &
prom_pid=$!

ready=0
for _ in $(seq 1 100); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$URL/-/ready" 2>/dev/null; then
    ready=1; break
  fi
  kill -0 "$prom_pid" 2>/dev/null || break
  sleep 0.2
done
if [[ $ready != 1 ]]; then
  echo "prometheus did not become ready; its log:" >&2
  cat "$work/prometheus.log" >&2
  exit 1
fi

echo "+ python3 scripts/native_histograms.py send $URL"
python3 scripts/native_histograms.py send "$URL"

# The head now spans more than 3h (1.5 x the 2h block range), so the commit of the
# last request triggered a head compaction: wait for its block to appear.
block=""
for _ in $(seq 1 150); do
  metas=("$work"/data/*/meta.json)
  if [[ -f ${metas[0]} ]]; then block=$(dirname "${metas[0]}"); break; fi
  kill -0 "$prom_pid" 2>/dev/null || break
  sleep 0.2
done
if [[ -z $block ]]; then
  echo "prometheus wrote no block; its log:" >&2
  cat "$work/prometheus.log" >&2
  exit 1
fi
echo "compacted block: $block"
maxt=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["maxTime"])' "$block/meta.json")

# Raw samples of the block's range as the query API reports them: a 2h range vector
# ending at maxTime-1 covers [minTime-1, maxTime-1], the block's exact range.
echo "+ python3 scripts/native_histograms.py expected $URL --time-ms $((maxt - 1)) --range 2h --out $OUT.expected.json"
python3 scripts/native_histograms.py expected "$URL" --time-ms "$((maxt - 1))" --range 2h --out "$OUT.expected.json"
mint=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["minTime"])' "$block/meta.json")
echo "+ python3 scripts/native_histograms.py check $OUT.expected.json --min-ms $mint --max-ms $maxt"
python3 scripts/native_histograms.py check "$OUT.expected.json" --min-ms "$mint" --max-ms "$maxt"

if grep -E 'level=(error|warn)' "$work/prometheus.log"; then
  echo "warning: prometheus logged errors or warnings (above)" >&2
fi

rm -rf "$OUT"
mkdir -p "$OUT"
cp -r "$block" "$OUT/"

# promtool dump opens a read-only DB, which wants a wal/: dump a copy.
mkdir -p "$work/dump"
cp -r "$OUT/." "$work/dump/"
mkdir -p "$work/dump/wal"
echo "+ promtool tsdb dump <copy of $OUT with an empty wal/> > $OUT.dump.txt"
"$PROMTOOL" tsdb dump "$work/dump" > "$OUT.dump.txt"

echo "block:"
cat "$OUT"/*/meta.json
echo
echo "done: $(ls -d "$OUT"/*/)"
