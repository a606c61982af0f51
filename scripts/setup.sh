#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything ConceptCaps needs (CPU machine).
# torch comes first from its CPU wheel: a plain `torch` requirement would pull a CUDA build of several GB.
# On a GPU machine, install the CUDA build of torch 2.13 into .venv first; this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ffmpeg >/dev/null 2>&1; then  # torchcodec (datasets' Audio feature) decodes through FFmpeg
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null
  else
    echo "ffmpeg is missing: install it (sudo apt-get install ffmpeg)" >&2; exit 1
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -c "import torch, transformers, datasets, trl, torchcodec" # fails loudly if the install did not
