#!/usr/bin/env bash
# Install lig-jax and run the main job: LIG for one sentence on the offline default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
"${LIG_VENV:-.venv}/bin/lig-jax" explain "${1:-The cat sat on the mat.}" -o "${2:-out.json}"
echo "wrote ${2:-out.json}" >&2
