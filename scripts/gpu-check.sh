#!/usr/bin/env bash
# The GPU check: on a machine with one GPU, in a few minutes, one table saying whether rwku's outputs and scores
# stay the same at any batch size there (kernel modes invariant and fast, batch 1 and 128, the default model on
# target 1), and the official-way benchmark at --limit 12. See docs/gpus-and-clusters.md, "Kernels".
#
#   bash scripts/gpu-check.sh ../shared/rwku-data/strzar-purge          # on the GPU
#   bash scripts/gpu-check.sh ../shared/rwku-data/strzar-purge --cpu    # a small try on the CPU
#
# Uses $PYTHON if set, else .venv/bin/python (made by scripts/setup.sh when missing).
set -euo pipefail
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
  echo "usage: scripts/gpu-check.sh DATA_FOLDER [--cpu] [more options of benchmarks/gpu_check.py]" >&2
  exit 2
fi
data="$(cd "$1" && pwd)"
shift
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  [ -x .venv/bin/python ] || source scripts/setup.sh
  PYTHON=.venv/bin/python
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec "$PYTHON" benchmarks/gpu_check.py --data "$data" "$@"
