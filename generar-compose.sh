#!/usr/bin/env bash
# Course entry point: ./generar-compose.sh OUT.yaml N [--no-check]
# Writes a Docker Compose file (Compose v2) with one server and N agency uploaders, after
# checking that the agency files and secrets it mounts exist (--no-check skips that).
# The logic lives in deploy/compose.py; this wrapper only finds a Python.
set -euo pipefail

if [[ $# -ne 2 && ! ($# -eq 3 && "${3:-}" == "--no-check") ]]; then
    echo "usage: $0 OUT.yaml N [--no-check]   (N = number of agencies, >= 1)" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# $PYTHON wins (handy in CI); then the project venv, which has PyYAML; then python3.
if [[ -n "${PYTHON:-}" ]]; then
    py="$PYTHON"
elif [[ -x "$here/.venv/bin/python" ]]; then
    py="$here/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
    py="python3"
else
    echo "error: no Python found (create .venv or install python3)" >&2
    exit 1
fi

exec "$py" "$here/deploy/compose.py" "$@"
