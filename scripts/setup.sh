#!/usr/bin/env bash
# Set up a virtual environment in .venv with everything ConceptCaps needs (CPU machine).
#   bash scripts/setup.sh           the pipeline, the researcher's tools and the review app
#   bash scripts/setup.sh --tests   the same, plus what only the tests need (Chromium for the review app's tests)
# torch comes first from its CPU index: a plain `torch` requirement would pull a CUDA build of several GB. Where
# that index cannot be reached, the configured index is used (a mirror that serves the CPU build, as ours do).
# On a GPU machine, install the CUDA build of torch 2.13 into .venv first; this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=false
[ "${1:-}" = "--tests" ] && tests=true
# Debian packages: ffmpeg (torchcodec, datasets' Audio feature, decodes through it), libfluidsynth3 and
# fluid-soundfont-gm (the symbolic renderer: FluidSynth, LGPL, and FluidR3_GM.sf2, MIT; the renderer always names
# that file, never libfluidsynth's default GPL soundfont), musescore-general-soundfont (MuseScore_General.sf3, MIT:
# the instruments generation/data/render_soundfonts.tsv plays from it), chromium (the review app's browser tests
# drive it with Playwright; no browser is downloaded)
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q libfluidsynth.so.3 || missing+=(libfluidsynth3)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
[ -f /usr/share/sounds/sf3/MuseScore_General.sf3 ] || missing+=(musescore-general-soundfont)
if $tests; then command -v chromium >/dev/null 2>&1 || missing+=(chromium); fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2; exit 1
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q --timeout 15 --retries 1 torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    2>/dev/null || .venv/bin/pip install -q torch==2.13.0
fi
.venv/bin/pip install -q -r requirements.txt 2> >(grep -v "^WARNING: Location" >&2)
.venv/bin/python -c "import torch, transformers, datasets, trl, torchcodec, fluidsynth, mido, gradio, playwright" # fails loudly if the install did not
# the pretrained musicnn taggers (PyPI's musicnn 0.1.0 wheel, ISC), converted once to safetensors in the user's cache
# (~/.cache/conceptcaps/musicnn) for the tagger audit and probing; without PyPI the audit is a counted skip
if ! ls "${CONCEPTCAPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/conceptcaps}"/musicnn/M*_musicnn.safetensors >/dev/null 2>&1; then
  .venv/bin/python -m probing.convert_musicnn \
    || echo "warning: musicnn weights not converted (python -m probing.convert_musicnn); the tagger audit will be skipped" >&2
fi
