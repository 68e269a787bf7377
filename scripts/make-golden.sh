#!/usr/bin/env bash
# Regenerate the promtool-made golden blocks in testdata/ from their
# OpenMetrics inputs:
#
#   testdata/<fixture>.om        input (made by scripts/gen_openmetrics.py)
#   testdata/<fixture>/<ULID>/   blocks made by `promtool tsdb create-blocks-from openmetrics`
#   testdata/<fixture>.dump.txt  what `promtool tsdb dump` prints for them
#
# Usage: scripts/make-golden.sh [--regen-inputs]
#   --regen-inputs  first rewrite the .om inputs with gen_openmetrics.py (deterministic:
#                   the same seed gives the same bytes).
#
# promtool assigns fresh ULIDs on every run, so the block directory names change;
# the samples (and the dump) do not. The native-histogram fixture is made by
# scripts/make-native-histogram-block.sh instead (it needs a running Prometheus).
set -euo pipefail

cd "$(dirname "$0")/.."
FIXTURES=(small varied)
SEED=20231114
PROMTOOL=${PROMTOOL:-promtool}

regen=0
for arg in "$@"; do
  case "$arg" in
    --regen-inputs) regen=1 ;;
    *) echo "usage: $0 [--regen-inputs]" >&2; exit 2 ;;
  esac
done

version=$("$PROMTOOL" --version 2>&1 | head -1)
echo "using: $version"
case "$version" in
  *"version 2.42."*) ;;
  *) echo "warning: the committed fixtures were made by promtool 2.42" >&2 ;;
esac

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for fx in "${FIXTURES[@]}"; do
  if [[ $regen == 1 || ! -f testdata/$fx.om ]]; then
    echo "+ python3 scripts/gen_openmetrics.py $fx --seed $SEED --out testdata/$fx.om"
    python3 scripts/gen_openmetrics.py "$fx" --seed "$SEED" --out "testdata/$fx.om"
  fi

  rm -rf "testdata/$fx"
  mkdir -p "testdata/$fx"
  echo "+ promtool tsdb create-blocks-from openmetrics testdata/$fx.om testdata/$fx"
  "$PROMTOOL" tsdb create-blocks-from openmetrics "testdata/$fx.om" "testdata/$fx"
  # Not part of the fixture: drop the (empty) head directories if promtool left any.
  rm -rf "testdata/$fx/wal" "testdata/$fx/chunks_head" "testdata/$fx/lock"

  # `promtool tsdb dump` opens the directory as a read-only DB, which wants a wal/:
  # dump a copy so the committed fixture stays block directories only.
  rm -rf "${tmp:?}/$fx"
  cp -r "testdata/$fx" "$tmp/$fx"
  mkdir -p "$tmp/$fx/wal"
  echo "+ promtool tsdb dump <copy of testdata/$fx with an empty wal/> > testdata/$fx.dump.txt"
  "$PROMTOOL" tsdb dump "$tmp/$fx" > "testdata/$fx.dump.txt"

  python3 scripts/check_dump.py "testdata/$fx.om" "testdata/$fx.dump.txt"
done

echo "done; block directories now:"
for fx in "${FIXTURES[@]}"; do
  for m in testdata/"$fx"/*/meta.json; do
    python3 - "$m" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
s = m["stats"]
print("  %s  minTime=%d maxTime=%d series=%d samples=%d chunks=%d" % (
    sys.argv[1].rsplit("/", 1)[0], m["minTime"], m["maxTime"], s["numSeries"], s["numSamples"], s["numChunks"]))
EOF
  done
done
