#!/usr/bin/env bash
# Starts the local demo: a Redis master, two replicas and three raft-sentinel nodes on
# loopback. Installs redis-server first if it is missing. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools >/dev/null
fi
cargo build --quiet
exec target/debug/raft-sentinel demo "$@"
