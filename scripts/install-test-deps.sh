#!/usr/bin/env bash
# Install what strata's tests need beyond the Rust toolchain. Idempotent: each
# step checks first and does nothing when its tool is already there.
#
#   promtool     Prometheus's TSDB tool (Debian's `prometheus` package, 2.42 on
#                bookworm); tests use it to cross-check blocks strata writes.
#   prometheus   the Prometheus 2.42 server itself (same package), which backup and
#                restore tests start on 127.0.0.1.
#   chromium     Debian's headless browser, for the web UI test.
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

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  echo "install-test-deps: promtool present: $(promtool --version 2>&1 | head -1)"
else
  echo "install-test-deps: promtool/prometheus missing; installing Debian's prometheus package"
  # The package's maintainer scripts would start a Prometheus service on :9090. Tests
  # start their own servers on 127.0.0.1, so keep the package from starting one: a
  # policy-rc.d that denies service starts (Debian's mechanism for exactly this), only
  # for the duration of the install and only if the machine has none of its own.
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt_install prometheus
  if [[ $own_policy == 1 ]]; then
    rm -f /usr/sbin/policy-rc.d
  fi
  # Under systemd the unit is also enabled for the next boot; stop and disable that
  # unit (and only it) so no package service competes with the tests for ports.
  if [[ -d /run/systemd/system ]]; then
    echo "install-test-deps: stopping and disabling prometheus.service (the package's unit)"
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
  fi
  echo "install-test-deps: installed $(promtool --version 2>&1 | head -1)"
fi

if command -v chromium >/dev/null 2>&1; then
  echo "install-test-deps: chromium present"
else
  echo "install-test-deps: chromium missing; installing Debian's chromium package (web UI tests)"
  apt_install chromium
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
