#!/usr/bin/env bash
# Installs the client libraries the compatibility and chaos suites use (pinned versions).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null || { echo "npm is required for the node client tests" >&2; exit 1; }
python3 -m venv --help >/dev/null 2>&1 || {
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -qq python3-venv >/dev/null
}
tests/compat/install.sh
