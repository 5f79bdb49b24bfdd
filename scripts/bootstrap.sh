#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the gateway with its development tools.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

"$PYTHON" - <<'PY' || { echo "[bootstrap] error: Python 3.11 or newer is required" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x "$ROOT/.venv/bin/python" ]; then
    echo "[bootstrap] creating $ROOT/.venv" >&2
    "$PYTHON" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install --quiet --upgrade pip
"$ROOT/.venv/bin/python" -m pip install --quiet -e "$ROOT[dev,loadtest]"
echo "[bootstrap] installed fanout-gateway into $ROOT/.venv" >&2
