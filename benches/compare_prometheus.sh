#!/usr/bin/env bash
# Compares strata's compactor with Prometheus's own (Debian's prometheus 2.42) on the
# same input blocks, once for adjacent blocks and once for overlapping ones (two
# replicas with the same series labels, scrapes one second apart).
#
#   bash benches/compare_prometheus.sh [SERIES] [HOURS] [CASES]
#
# Defaults: 20000 series, 26h, CASES=adjacent,overlapping,memory. The scale runs of
# docs/performance.md are, e.g.:
#   bash benches/compare_prometheus.sh 200000 14 adjacent
#   bash benches/compare_prometheus.sh 200000 2 overlapping
#   bash benches/compare_prometheus.sh 1000000 2 overlapping
# With CHECK=1 the promtool dump of each output is compared with the input's (sha256 of
# both dumps, streamed; a vertical merge's one-to-one output equals the union promtool's
# own querier gives). At 200k series that takes minutes per case.
#
# For the adjacent case the disk's own speed is measured in the same run: `dd` writes and
# fsyncs as many bytes as strata's output holds, once through the page cache and once
# with O_DIRECT (strata writes chunk segments with O_DIRECT where it can).
#
# Prometheus is started on a copy of the directory with a long retention and no scrape
# targets, listening on loopback only; its first compaction cycle starts about a minute
# after start-up, and its log line `msg="compact blocks" ... duration=` gives the time
# of each compaction. strata runs `strata compact --block-ranges 2h,6h,18h,54h,162h,486h`
# (Prometheus's ranges for that retention) on another copy. Peak memory: strata's
# maximum RSS (getrusage of the child); Prometheus's VmHWM, which includes the idle
# server (printed separately).
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-20000}
HOURS=${2:-26}
CASES=${3:-adjacent,overlapping,memory}
want() { [[ ",$CASES," == *",$1,"* ]]; }
WORK=$(mktemp -d /tmp/strata-bench.XXXXXX)
trap 'pkill -f "storage.tsdb.path=$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --quiet
STRATA=target/release/strata
command -v prometheus >/dev/null || bash scripts/install-test-deps.sh >/dev/null

run_prometheus() { # dir -> prints "seconds peak_rss_kb peak_anon_kb idle_anon_kb compactions"
  local dir=$1 port log
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$WORK/prom-$(basename "$dir").log
  printf 'global:\n  scrape_interval: 1h\n' > "$WORK/prom.yml"
  prometheus --config.file="$WORK/prom.yml" --storage.tsdb.path="$dir" --storage.tsdb.retention.time=100y \
    --web.listen-address=127.0.0.1:"$port" --log.level=info >"$log" 2>&1 &
  local pid=$! last=0 quiet=0 stop=$WORK/stop-$(basename "$dir")
  rm -f "$stop"
  sleep 3
  local idle; idle=$(awk '/RssAnon/{print $2}' /proc/$pid/status)
  python3 benches/peakmem.py --pid $pid --until "$stop" > "$WORK/mem-$(basename "$dir")" &
  local poller=$!
  # Wait for the first compaction, then until none has been logged for 10 s.
  for _ in $(seq 1 900); do
    sleep 1
    local n; n=$(grep -c 'msg="compact blocks"' "$log" || true)
    if [ "$n" -gt 0 ]; then
      if [ "$n" = "$last" ] && ! ls "$dir" | grep -q tmp-for-creation; then quiet=$((quiet+1)); else quiet=0; fi
      last=$n
      [ "$quiet" -ge 10 ] && break
    fi
  done
  touch "$stop"; wait $poller
  kill $pid; wait $pid 2>/dev/null || true
  local secs
  # duration= is a Go duration: 950.1ms, 12.5s, 2m3.25s, 1h0m2s.
  secs=$(grep 'msg="compact blocks"' "$log" | sed -E 's/.*duration=([0-9.hmsuµn]+).*/\1/' | python3 -c '
import re, sys
unit = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
print("%.3f" % sum(float(n) * unit[u] for line in sys.stdin for n, u in re.findall(r"([0-9.]+)(ms|us|µs|ns|h|m|s)", line)))')
  read -r _ prss panon < "$WORK/mem-$(basename "$dir")"
  echo "$secs $prss $panon $idle $last"
}

run_strata() { # dir -> prints "seconds peak_rss_kb peak_anon_kb merge_seconds"
  # Started on a settled machine, as Prometheus's compaction starts a minute after it.
  sync; sleep 3
  local out
  out=$(python3 benches/peakmem.py --stderr "$WORK/strata.log" $STRATA compact --downsampling.disable --block-ranges 2h,6h,18h,54h,162h,486h "$1")
  # took= on strata's summary lines: the merges themselves (reading, merging, writing and
  # fsyncing the output), what Prometheus's duration= measures.
  echo "$out $(grep -o 'took=[0-9.]*m\?s' "$WORK/strata.log" | sed -E 's/took=([0-9.]+)(ms|s)/\1 \2/' | awk '{ t += ($2=="ms") ? $1/1000 : $1 } END { printf "%.3f", t }')"
}

samples() { python3 -c 'import json,sys,glob; print(sum(json.load(open(f))["stats"].get("numSamples",0) for f in glob.glob(sys.argv[1]+"/*/meta.json")))' "$1"; }

bench() { # name, hours, gen args...
  local name=$1 hours=$2; shift 2
  rm -rf "$WORK/in"
  $STRATA gen --output "$WORK/in" --series "$SERIES" --duration "${hours}h" "$@" 2>/dev/null
  local n; n=$(samples "$WORK/in")
  # Each tool gets its own copy made just before it runs, so both start with their input
  # in the page cache and no writeback of the copy pending (sync). A copy made for strata
  # before Prometheus's run was partly evicted by it at 1M series (input, copies and
  # Prometheus's output are about 20 GB): strata then read from disk and took 14.4 s
  # instead of 10.7-11.0 s.
  rm -rf "$WORK/p" "$WORK/s"; cp -r "$WORK/in" "$WORK/p"
  sync
  read -r ps prss panon pidle pn < <(run_prometheus "$WORK/p")
  # Prometheus's copy goes before strata's is made: at 1M series its input and output fill
  # about 10 GB of page cache, which the kernel would otherwise reclaim during strata's run.
  local pb; pb=$(ls "$WORK/p" | grep -c '^01'); rm -rf "$WORK/p"
  cp -r "$WORK/in" "$WORK/s"
  read -r ss srss sanon smerge < <(run_strata "$WORK/s")
  local sb; sb=$(ls "$WORK/s" | grep -c '^01')
  printf '%-12s input %s samples in %s blocks\n' "$name" "$n" "$(ls "$WORK/in" | grep -c '^01')"
  printf '  prometheus 2.42: %6.2fs in %s compactions -> %s blocks; peak RSS %s MiB, peak anon %s MiB (idle server %s MiB)\n' "$ps" "$pn" "$pb" "$((prss/1024))" "$((panon/1024))" "$((pidle/1024))"
  printf '  strata:          %6.2fs (whole process; merges %.2fs) -> %s blocks; peak RSS %s MiB, peak anon %s MiB\n' "$ss" "$smerge" "$sb" "$((srss/1024))" "$((sanon/1024))"
  printf '  ratio: %.1fx faster (whole process), %.1fx (merges); peak RSS %.2f, peak anon %.2f of Prometheus'"'"'s\n' "$(echo "$ps / $ss" | bc -l)" "$(echo "$ps / $smerge" | bc -l)" "$(echo "$srss / $prss" | bc -l)" "$(echo "$sanon / $panon" | bc -l)"
  if [ "$name" = adjacent ]; then
    # The disk bound: write and fsync as many bytes as strata wrote (its new blocks).
    local bytes=0 b
    for b in "$WORK"/s/01*; do
      [ -e "$WORK/in/$(basename "$b")" ] || bytes=$((bytes + $(du -sb "$b" | cut -f1)))
    done
    # Twice: through the page cache (as Prometheus writes) and with O_DIRECT (as strata
    # writes chunk segments where the filesystem takes it).
    local t0 t1 flag count=$(( (bytes + 4194303) / 4194304 ))
    for flag in conv=fsync "oflag=direct conv=fsync"; do
      t0=$(date +%s.%N)
      # shellcheck disable=SC2086
      dd if=/dev/zero of="$WORK/dd" bs=4M count=$count $flag status=none
      t1=$(date +%s.%N); rm -f "$WORK/dd"; sync
      printf '  disk bound (dd %s): %s MB in %.2fs (%.0f MB/s); strata took %.2fx that (%.0f MB/s of output)\n' \
        "$flag" "$((bytes/1000000))" "$(echo "$t1 - $t0" | bc -l)" "$(echo "$bytes / 1000000 / ($t1 - $t0)" | bc -l)" \
        "$(echo "$ss / ($t1 - $t0)" | bc -l)" "$(echo "$bytes / 1000000 / $ss" | bc -l)"
    done
  fi
  if [ "${CHECK:-0}" = 1 ]; then
    mkdir -p "$WORK/in/wal" "$WORK/s/wal"
    local a b; a=$(promtool tsdb dump "$WORK/in" | sha256sum | cut -c1-16); b=$(promtool tsdb dump "$WORK/s" | sha256sum | cut -c1-16)
    if [ "$a" = "$b" ]; then echo "  check: promtool dump of the output equals the input's ($a)"; else echo "  check: FAILED: promtool dumps differ (input $a, output $b)"; exit 1; fi
  fi
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem/{print $2}') GiB"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); cases: $CASES; $SERIES series"
if want adjacent; then bench adjacent "$HOURS"; fi
# Overlapping: two replicas of every block, same series labels, no external labels
# (Prometheus ignores them anyway), scrapes one second apart.
if want overlapping; then bench overlapping 2 --replicas 2 --replica-offset 1s; fi
want memory || exit 0

# Peak memory as samples per series double (same series and time range, scrape interval
# halved): strata's heap should stay flat.
for interval in 30s 15s 7500ms; do
  rm -rf "$WORK/m"
  $STRATA gen --output "$WORK/m" --series "$SERIES" --duration "${HOURS}h" --scrape-interval "$interval" 2>/dev/null
  sync
  n=$(samples "$WORK/m")
  read -r ms mrss manon _ < <(run_strata "$WORK/m")
  printf 'memory       scrape %-7s %11s samples: strata %6.2fs, peak RSS %s MiB, peak anon %s MiB\n' "$interval" "$n" "$ms" "$((mrss/1024))" "$((manon/1024))"
done
