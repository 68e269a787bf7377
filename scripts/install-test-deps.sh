#!/usr/bin/env bash
# Install what strata's tests need beyond the Rust toolchain. Idempotent: each
# step checks first and does nothing when its tool is already there.
#
#   promtool     Prometheus's TSDB tool (Debian's `prometheus` package, 2.42 on
#                bookworm); tests use it to cross-check blocks strata writes.
#   moto_server  PyPI's `moto[server]`: a real S3 API on 127.0.0.1 that the bucket
#                tests run against (scripts/moto.sh starts it).
#
# Runs as root, non-interactively (CI has no standard input).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
  if [[ $apt_updated == 0 ]]; then
    echo "install-test-deps: apt-get update"
    apt-get update -q
    apt_updated=1
  fi
  echo "install-test-deps: apt-get install -y --no-install-recommends $*"
  apt-get install -y -q --no-install-recommends "$@"
}

if command -v promtool >/dev/null 2>&1; then
  echo "install-test-deps: promtool present: $(promtool --version 2>&1 | head -1)"
else
  echo "install-test-deps: promtool missing; installing Debian's prometheus package"
  apt_install prometheus
  # The package may start a Prometheus server (listening on :9090); tests only
  # need promtool, so stop it. systemd is often not running in containers.
  echo "install-test-deps: stopping the prometheus service the package may have started"
  systemctl stop prometheus >/dev/null 2>&1 || true
  systemctl disable prometheus >/dev/null 2>&1 || true
  pkill -x prometheus || true
  echo "install-test-deps: installed $(promtool --version 2>&1 | head -1)"
fi

if command -v moto_server >/dev/null 2>&1; then
  echo "install-test-deps: moto_server present"
else
  echo "install-test-deps: moto_server missing; installing moto[server] from PyPI"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt_install python3-pip
  fi
  # A Debian system Python refuses pip installs unless told otherwise (PEP 668).
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'moto[server]'
  hash -r
  if ! command -v moto_server >/dev/null 2>&1; then
    echo "install-test-deps: moto_server still not on PATH after pip install (check pip's scripts directory)" >&2
    exit 1
  fi
  echo "install-test-deps: installed moto $(python3 -c 'import moto; print(moto.__version__)')"
fi
