#!/usr/bin/env bash
# Runs the chaos suite: makes a virtualenv with redis-py on first use, then chaos.py with the
# given arguments (see chaos/README.md). Needs root for network namespaces.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv"
if ! "$venv/bin/python" -c 'import redis' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
exec "$venv/bin/python" "$here/chaos.py" "$@"
