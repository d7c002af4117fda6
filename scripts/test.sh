#!/usr/bin/env bash
# Install lig-jax with its test extras and run the lint and the whole test suite.
# Each test file runs in its own Python process: XLA once crashed compiling inside one
# long-lived process that had run the whole suite, never in a fresh one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
venv="${LIG_VENV:-.venv}"
"$venv/bin/ruff" check .
if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then  # explicit test paths: one process
    exec "$venv/bin/python" -m pytest "$@"
fi
status=0
for f in tests/test_*.py; do
    echo "== $f"
    "$venv/bin/python" -m pytest "$@" "$f" || status=$?
done
exit "$status"
