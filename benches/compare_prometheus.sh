#!/usr/bin/env bash
# Compares strata's compactor with Prometheus's own (Debian's prometheus 2.42) on the
# same input blocks, once for adjacent blocks and once for overlapping ones (two
# replicas with the same series labels, scrapes one second apart).
#
#   bash benches/compare_prometheus.sh [SERIES] [HOURS]     (defaults: 20000 series, 12h)
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
HOURS=${2:-12}
WORK=$(mktemp -d /tmp/strata-bench.XXXXXX)
trap 'pkill -f "storage.tsdb.path=$WORK" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --quiet
STRATA=target/release/strata
command -v prometheus >/dev/null || bash scripts/install-test-deps.sh >/dev/null

peak_rss_kb() { # runs a command, prints its peak RSS in kB on fd 3
  python3 - "$@" 3>&1 <<'PY'
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
PY
}

run_prometheus() { # dir -> prints "seconds peak_kb idle_kb compactions"
  local dir=$1 port log
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  log=$WORK/prom-$(basename "$dir").log
  printf 'global:\n  scrape_interval: 1h\n' > "$WORK/prom.yml"
  prometheus --config.file="$WORK/prom.yml" --storage.tsdb.path="$dir" --storage.tsdb.retention.time=100y \
    --web.listen-address=127.0.0.1:"$port" --log.level=info >"$log" 2>&1 &
  local pid=$! idle=0 last=0 quiet=0
  sleep 5
  idle=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  # Wait for the first compaction, then until none has been logged for 10 s.
  for _ in $(seq 1 600); do
    sleep 1
    local n; n=$(grep -c 'msg="compact blocks"' "$log" || true)
    if [ "$n" -gt 0 ]; then
      if [ "$n" = "$last" ] && ! ls "$dir" | grep -q tmp-for-creation; then quiet=$((quiet+1)); else quiet=0; fi
      last=$n
      [ "$quiet" -ge 10 ] && break
    fi
  done
  local peak; peak=$(awk '/VmHWM/{print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  local secs
  secs=$(grep 'msg="compact blocks"' "$log" | sed -E 's/.*duration=([0-9.]+)(ms|s|m).*/\1 \2/' | awk '{ if ($2=="ms") t+=$1/1000; else if ($2=="m") t+=$1*60; else t+=$1 } END { printf "%.3f", t }')
  echo "$secs $peak $idle $last"
}

run_strata() { # dir -> prints "seconds peak_kb"
  local dir=$1 start end peak
  start=$(date +%s.%N)
  peak=$(peak_rss_kb $STRATA compact --quiet --block-ranges 2h,6h,18h,54h,162h,486h "$dir" 2>/dev/null)
  end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc -l) $peak"
}

bench() { # name, hours, gen args...
  local name=$1 hours=$2; shift 2
  rm -rf "$WORK/in"
  $STRATA gen --output "$WORK/in" --series "$SERIES" --duration "${hours}h" "$@" 2>/dev/null
  local samples; samples=$($STRATA inspect "$WORK/in" | awk 'NR>1{s+=$9} END{print s}')
  rm -rf "$WORK/p" "$WORK/s"; cp -r "$WORK/in" "$WORK/p"; cp -r "$WORK/in" "$WORK/s"
  read -r ps pk pidle pn < <(run_prometheus "$WORK/p")
  read -r ss sk < <(run_strata "$WORK/s")
  printf '%-12s samples=%s prometheus: %ss in %s compactions, peak %s MiB (idle %s MiB) | strata: %.3fs, peak %s MiB | speed-up %.1fx, memory ratio %.2f\n' \
    "$name" "$samples" "$ps" "$pn" "$((pk/1024))" "$((pidle/1024))" "$ss" "$((sk/1024))" "$(echo "$ps / $ss" | bc -l)" "$(echo "$sk / $pk" | bc -l)"
}

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem/{print $2}') GiB"
bench adjacent "$HOURS"
# Overlapping: two replicas of every block, same series labels, no external labels
# (Prometheus ignores them anyway), scrapes one second apart.
bench overlapping 2 --replicas 2 --replica-offset 1s
