#!/usr/bin/env bash
# Runs every test of raft-sentinel. Installs what the tests need first (Debian packages,
# client libraries for the compatibility suite), so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-sentinel >/dev/null || need_apt+=(redis-sentinel)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
# `ip` builds the network namespaces of the partition tests and the chaos smoke run.
command -v ip >/dev/null || need_apt+=(iproute2)
# promtool checks and unit-tests the alert rules and the dashboard's queries. It comes with
# Debian's Prometheus server package (about 20 MB to download, 100 MB installed; the server
# itself is not used). promtool is a static binary: the recommended node exporter is not needed.
command -v promtool >/dev/null || need_apt+=(prometheus)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi
# Debian's package starts a redis-server service on 6379 where an init system runs; the tests
# start their own instances on free ports and never use it.

if [ -x scripts/install-client-deps.sh ]; then
  log "installing client libraries for the compatibility suite"
  scripts/install-client-deps.sh
fi

log "layering check: model and fsm stay pure; failover and api never use monitor (src/lib.rs)"
scripts/check-layers.sh

log "python lint: ruff over bench/, chaos/, tests/compat/ and scripts/ (ruff.toml)"
tests/compat/.venv/bin/ruff check --no-cache

log "monitoring: promtool checks the alert rules and dashboard queries, runs the rule tests"
scripts/check-monitoring.sh

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi

log "chaos: checker tests"
python3 -m unittest discover -s chaos/tests

log "chaos: smoke run against raft-sentinel (network namespaces as root)"
# An absolute path: redis-server opens its log file after changing into its data dir.
smoke="$PWD/target/chaos-smoke"
rm -rf "$smoke"
chaos/run.sh --target raft --scenario kill-master --scenario partition-master \
  --scenario master-restart-empty --no-build --out "$smoke"
python3 scripts/chaos-smoke-check.py "$smoke"
