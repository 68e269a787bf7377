#!/usr/bin/env bash
# Run moto_server (PyPI `moto[server]`, a real S3 API implementation) on 127.0.0.1
# with a port the kernel picks, for tests and for trying strata out.
#
#   scripts/moto.sh LOGFILE [WATCH_PID]
#
# moto's log goes to LOGFILE; its first lines include
#   * Running on http://127.0.0.1:PORT
# and then one line per request ("PUT /bucket/key HTTP/1.1" 200 -), which the tests
# read to check the order of uploads and deletes.
#
# moto stops when this script gets SIGTERM or SIGINT, or, when WATCH_PID is given,
# as soon as that process is gone (so a killed test run leaves no server behind).
#
# Environment is passed through, e.g. INITIAL_NO_AUTH_ACTION_COUNT=1 makes moto
# check credentials after the first request. Create a bucket with
#   curl -X PUT http://127.0.0.1:PORT/BUCKET
# (scripts/install-test-deps.sh installs moto_server.)
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 LOGFILE [WATCH_PID]" >&2
  exit 2
fi
log=$1
watch=${2:-}

if ! command -v moto_server >/dev/null 2>&1; then
  echo "moto.sh: moto_server not found; run scripts/install-test-deps.sh (pip install 'moto[server]')" | tee "$log" >&2
  exit 1
fi

moto_server -H 127.0.0.1 -p 0 >"$log" 2>&1 &
moto=$!
stop() {
  kill "$moto" 2>/dev/null || true
  wait "$moto" 2>/dev/null || true
}
trap 'stop; exit 0' TERM INT
trap stop EXIT

while kill -0 "$moto" 2>/dev/null; do
  if [[ -n $watch ]] && ! kill -0 "$watch" 2>/dev/null; then
    break
  fi
  sleep 0.5
done
