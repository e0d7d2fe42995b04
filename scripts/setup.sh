#!/usr/bin/env bash
# Create .venv with Python >= 3.12 and install bayesnmf with its test extra.
# Usage: bash scripts/setup.sh        (re-running it only refreshes the install)
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local candidates=(python3.12 python3.13 python3.14 python3)
    for exe in "${candidates[@]}"; do
        if command -v "$exe" >/dev/null 2>&1 && "$exe" -c \
            'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
            command -v "$exe"; return 0
        fi
    done
    # pyenv installs versions that its shims only expose when selected.
    if command -v pyenv >/dev/null 2>&1; then
        for dir in "$(pyenv root)"/versions/3.1[2-9]*; do
            [ -x "$dir/bin/python3" ] && { echo "$dir/bin/python3"; return 0; }
        done
    fi
    return 1
}

if [ ! -x .venv/bin/python ]; then
    PY=$(find_python) || { echo "bayesnmf needs Python >= 3.12; none found." >&2; exit 1; }
    echo "Creating .venv with $("$PY" --version)" >&2
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
