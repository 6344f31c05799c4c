#!/usr/bin/env bash
# Create the virtualenv and install the hub with its test dependencies (pinned in pyproject.toml).
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "error: Python >= 3.11 is needed ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "installing python3-venv (Debian package)" >&2
  (apt-get update -qq && apt-get install -y -qq python3-venv) >/dev/null
fi
# Debian packages: xmlsec1 (independent XML-DSig/XML-Enc implementation for interop tests),
# chromium + chromium-driver (the browser test of the tracking page, tests/browser/),
# prometheus (promtool checks and tests the alert rules; a real Prometheus for the live test),
# docker-compose (validates compose.yaml without a container engine)
missing=()
command -v xmlsec1 >/dev/null 2>&1 || missing+=(xmlsec1)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)  # a CI runner without root usually has password-less sudo
  if command -v apt-get >/dev/null 2>&1 && { [ ${#as_root[@]} -eq 0 ] || sudo -n true 2>/dev/null; }; then
    echo "installing Debian packages: ${missing[*]}" >&2
    ("${as_root[@]}" apt-get update -qq && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq "${missing[@]}") >/dev/null
  else
    echo "warning: please install the Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
  fi
fi
# RabbitMQ's management and prometheus plugins on the local broker: the live monitoring test
# scrapes :15692 (/metrics, /metrics/detailed) and the management API on :15672 serves topology
# policies. Enabling is online (no restart) and idempotent; skipped when this host runs no broker.
if command -v rabbitmq-plugins >/dev/null 2>&1; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  if ! "${as_root[@]}" rabbitmq-plugins enable rabbitmq_management rabbitmq_prometheus >"${TMPDIR:-/tmp}/hub-plugins.log" 2>&1; then
    echo "warning: could not enable the RabbitMQ plugins rabbitmq_management and rabbitmq_prometheus" \
         "(is the broker running? log: ${TMPDIR:-/tmp}/hub-plugins.log)" >&2
  fi
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
log="$venv/bootstrap.log"
if ! { "$venv/bin/python" -m pip install -q --upgrade pip && "$venv/bin/python" -m pip install -q -e '.[test]'; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "error: installing the Python packages failed (log above, also in $log)" >&2
  exit 1
fi
echo "bootstrap: $venv ready" >&2
