#!/usr/bin/env bash
# The compactor job (`strata run`, one iteration) at scale, against a FILESYSTEM bucket and
# against S3 (moto_server on loopback), next to the offline merge of the same blocks.
#
#   bash benches/job_scale.sh [SERIES] [HOURS] [BACKENDS]
#   BUCKET_PARENT=/dev/shm bash benches/job_scale.sh ...   # FILESYSTEM bucket elsewhere
#
# Defaults: 200000 series, 18h (nine 2h blocks, external label cluster="bench": two
# complete 8h windows, so two plans of four blocks; the newest block is left alone, as
# Thanos's planner leaves it),
# BACKENDS=filesystem,s3. For each backend the blocks are shipped into an empty bucket
# with `strata bucket upload` (not timed), then `strata run` compacts them (one-shot,
# --compact.concurrency 2 as the offline run merges both groups at once, downsampling
# off, sources only marked for deletion). Reported from the job's own JSON log:
# the time spent downloading, merging, verifying and uploading (summed over plans; the
# two plans overlap, and each output is verified while it uploads, so the sum can exceed
# the wall time), the whole process's wall time
# and its peak heap (RssAnon, benches/peakmem.py). The offline figure is
# `strata compact` of a copy of the same blocks.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-200000}
HOURS=${2:-18}
BACKENDS=${3:-filesystem,s3}
WORK=$(mktemp -d /tmp/strata-job.XXXXXX)
MOTO=
cleanup() {
  if [ -n "$MOTO" ]; then kill "$MOTO" 2>/dev/null || true; wait "$MOTO" 2>/dev/null || true; fi
  rm -rf "$WORK"
  if [ -n "${BUCKET_PARENT:-}" ] && [ -n "${BUCKET:-}" ]; then rm -rf "$BUCKET"; fi
}
trap cleanup EXIT

cargo build --release --quiet
STRATA=$PWD/target/release/strata
command -v moto_server >/dev/null || bash scripts/install-test-deps.sh >/dev/null

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem/{print $2}') GiB"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $SERIES series x ${HOURS}h; backends: $BACKENDS"
$STRATA gen --output "$WORK/in" --series "$SERIES" --duration "${HOURS}h" --label cluster=bench 2>/dev/null
echo "input: $(ls "$WORK/in" | grep -c '^01') blocks, $(du -sb "$WORK/in" | awk '{printf "%.2f GB", $1/1e9}')"

cp -r "$WORK/in" "$WORK/off"
sync; sleep 3
read -r osecs _ oanon < <(python3 benches/peakmem.py --stderr "$WORK/off.log" \
  "$STRATA" compact --downsampling.disable --block-ranges 2h,8h,2d,14d "$WORK/off")
printf 'offline  strata compact:  %6.2f s whole process, peak heap %s MiB\n' "$osecs" "$((oanon / 1024))"

# Sums one JSON log's events: prints "download_s upload_s merge_s verify_s plans MB_down MB_up".
phases() {
  python3 - "$1" <<'EOF'
import json, sys
d = u = m = v = 0.0
plans = 0
down = up = 0
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    msg = e.get("msg", "")
    if msg == "block downloaded":
        d += e["duration_ms"] / 1000; down += e["bytes"]
    elif msg == "block uploaded":
        u += e["duration_ms"] / 1000; up += e["bytes"]
    elif msg == "merged":
        m += e["merge_ms"] / 1000; plans += 1
    elif msg == "verified":
        v += e["verify_ms"] / 1000
print(f"{d:.2f} {u:.2f} {m:.2f} {v:.2f} {plans} {down / 1e6:.0f} {up / 1e6:.0f}")
EOF
}

for backend in ${BACKENDS//,/ }; do
  case $backend in
    filesystem)
      # BUCKET_PARENT puts the bucket on another filesystem (e.g. /dev/shm): the job then
      # copies; on the data directory's filesystem it hard-links.
      BUCKET=$WORK/bucket
      if [ -n "${BUCKET_PARENT:-}" ]; then BUCKET=$(mktemp -d "$BUCKET_PARENT/strata-job-bucket.XXXXXX"); fi
      mkdir -p "$BUCKET"
      printf 'type: FILESYSTEM\nconfig:\n  directory: %s\n' "$BUCKET" > "$WORK/objstore.yml"
      ;;
    s3)
      if [ -z "$MOTO" ]; then
        moto_server -H 127.0.0.1 -p 0 > "$WORK/moto.log" 2>&1 &
        MOTO=$!
        for _ in $(seq 1 100); do grep -q 'Running on http' "$WORK/moto.log" && break; sleep 0.2; done
      fi
      port=$(sed -n 's/.*Running on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/moto.log" | head -1)
      curl -sf -X PUT "http://127.0.0.1:$port/bench" >/dev/null
      printf 'type: S3\nconfig:\n  bucket: bench\n  endpoint: 127.0.0.1:%s\n  insecure: true\n  access_key: bench\n  secret_key: bench\n' "$port" > "$WORK/objstore.yml"
      ;;
    *) echo "unknown backend $backend (filesystem, s3)" >&2; exit 2 ;;
  esac
  rm -rf "$WORK/ship" "$WORK/data"; cp -r "$WORK/in" "$WORK/ship"
  $STRATA bucket upload "$WORK/ship" --label cluster=bench --objstore.config-file "$WORK/objstore.yml" \
    >/dev/null 2>"$WORK/upload.log" || { cat "$WORK/upload.log"; exit 1; }
  rm -rf "$WORK/ship"
  sync; sleep 3
  read -r jsecs _ janon < <(python3 benches/peakmem.py --stderr "$WORK/job-$backend.log" \
    "$STRATA" --log.format json run --objstore.config-file "$WORK/objstore.yml" --data-dir "$WORK/data" \
    --consistency-delay 0s --compact.concurrency 2 --downsampling.disable --http-address 127.0.0.1:0)
  read -r d u m v plans mbd mbu < <(phases "$WORK/job-$backend.log")
  printf '%-10s strata run:      %6.2f s whole process, peak heap %s MiB; %s plans: download %.2f s (%s MB), merge %.2f s, verify %.2f s, upload %.2f s (%s MB)\n' \
    "$backend" "$jsecs" "$((janon / 1024))" "$plans" "$d" "$mbd" "$m" "$v" "$u" "$mbu"
  printf '           job / offline: %.2fx the time, heap %+d MiB\n' "$(echo "$jsecs / $osecs" | bc -l)" "$(((janon - oanon) / 1024))"
  if [ "$backend" = s3 ]; then kill "$MOTO"; wait "$MOTO" 2>/dev/null || true; MOTO=; fi
done
