#!/usr/bin/env bash
# Installs the Sentinel client libraries the compatibility suite runs (tests/sentinel_compat.rs):
# redis-py (and grpcio with grpcio-reflection for the gRPC API reflection test) into
# tests/compat/.venv, ioredis and node-redis into tests/compat/node_modules; ruff, which
# scripts/test.sh runs over the Python tools, into the same .venv.
# Versions are pinned in requirements.txt and package.json. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ] || [ ! -x .venv/bin/ruff ] \
  || ! .venv/bin/python -c 'import redis, grpc, grpc_reflection' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q -r requirements.txt
fi
if [ ! -d node_modules/ioredis ] || [ ! -d node_modules/redis ]; then
  npm install --no-audit --no-fund --silent
fi
