#!/usr/bin/env bash
# Install lig-jax with its test extras and run the lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
venv="${LIG_VENV:-.venv}"
"$venv/bin/ruff" check .
"$venv/bin/python" -m pytest "$@"
