#!/usr/bin/env bash
# Install lig-jax with its test extras, run the lint, then the test suite as one pytest
# invocation spread over the cores (pytest-xdist, `--dist loadfile`: each file stays on one
# worker, so its module fixtures and conversions are built once; files are dealt in file-name
# order, which balances the two cores of a small machine better than xdist's default
# reordering by number of tests, measured).
#   bash scripts/test.sh                      the default suite (slow cases left out)
#   bash scripts/test.sh -m slow              the slow parity cases only
#   bash scripts/test.sh -m "not readme"      both (what CI runs)
#   bash scripts/test.sh tests/test_api.py    one file (any pytest arguments pass through)
# LIG_TEST_WORKERS sets the number of workers (default: one per core).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
venv="${LIG_VENV:-.venv}"
"$venv/bin/ruff" check .
exec "$venv/bin/python" -m pytest -n "${LIG_TEST_WORKERS:-auto}" --dist loadfile --no-loadscope-reorder "$@"
