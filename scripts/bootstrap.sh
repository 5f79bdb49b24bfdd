#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the gateway with its development tools. Each step
# says what it does on one line; pip's own output goes to .venv/bootstrap.log, whose last lines
# are shown when a step fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
LOG="$ROOT/.venv/bootstrap.log"
# shellcheck source=scripts/quietly.sh
source "$ROOT/scripts/quietly.sh"

say() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

"$PYTHON" - <<'PY' || die "Python 3.11 or newer is required"
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x "$ROOT/.venv/bin/python" ]; then
    say "creating $ROOT/.venv"
    "$PYTHON" -m venv "$ROOT/.venv"
fi
: >"$LOG"
say "upgrading pip (output in $LOG)"
quietly "$LOG" "$ROOT/.venv/bin/python" -m pip install --progress-bar off --upgrade pip \
    || die "pip could not upgrade itself (log: $LOG)"
say "installing fanout-gateway with its development and load-test tools (about a minute the first time)"
quietly "$LOG" "$ROOT/.venv/bin/python" -m pip install --progress-bar off -e "$ROOT[dev,loadtest]" \
    || die "pip could not install fanout-gateway (log: $LOG)"
say "installed fanout-gateway into $ROOT/.venv"

# The AsyncAPI validator (tools/asyncapi: @asyncapi/parser from npm, as its lock pins it), run by
# tests/acceptance/test_asyncapi.py on the document of the events on Kafka; Node.js and npm come
# from Debian's packages when missing.
if ! command -v npm >/dev/null && command -v apt-get >/dev/null; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing Node.js and npm from Debian's packages, for the AsyncAPI validator"
    { quietly "$LOG" $sudo apt-get update -qq \
        && quietly "$LOG" $sudo env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends nodejs npm; } \
        || die "could not install nodejs and npm (log: $LOG)"
fi
if command -v npm >/dev/null; then
    say "installing the AsyncAPI validator's packages into tools/asyncapi (npm ci)"
    quietly "$LOG" npm ci --prefix "$ROOT/tools/asyncapi" \
        || die "npm could not install tools/asyncapi's packages (log: $LOG)"
else
    say "warning: no npm: install Node.js 18+ and npm for tests/acceptance/test_asyncapi.py"
fi

# The console's browser tests (tests/acceptance/test_console.py) drive Debian's chromium through
# Playwright; Playwright's own browser download is not used.
if [ ! -x /usr/bin/chromium ]; then
    if command -v apt-get >/dev/null; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        say "installing chromium from Debian's packages, for the console's browser tests"
        { quietly "$LOG" $sudo apt-get update -qq \
            && quietly "$LOG" $sudo env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends chromium; } \
            || die "could not install chromium (log: $LOG)"
    else
        say "warning: no apt-get: install chromium at /usr/bin/chromium for tests/acceptance/test_console.py"
    fi
fi
