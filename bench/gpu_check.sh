#!/usr/bin/env bash
# The GPU check, one command, within 10 minutes on one GPU:
#   bench/gpu_check.sh            the `gpu` tests, then bench/gpu_check.py's figures
#                                 (train and predict images/s of the reference model at
#                                 128 and 256 px in bf16, eager and torch.compile; a
#                                 2-epoch reference training on the demo data; the
#                                 projected full reference run) into bench/RESULTS.md
#   bench/gpu_check.sh --dry-run  every step but the GPU-only ones, on CPU, on tiny
#                                 sizes (the gpu tests collected, not run); `make test`
#                                 runs it, so the check cannot rot
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
# The test files that hold gpu-marked tests (collecting the whole suite takes a minute).
mapfile -t GPU_TESTS < <(grep -rlE "pytest\.mark\.gpu|mark\.gpu\b" tests --include='test_*.py' | sort)

if [[ $DRY == 1 ]]; then
    echo "== gpu tests (collected only: no GPU in a dry run)"
    "$PY" -m pytest -m gpu --collect-only -q -p no:cacheprovider "${GPU_TESTS[@]}" | tail -n 1
    echo "== figures (tiny, CPU)"
    "$PY" bench/gpu_check.py --tiny
    exit 0
fi

"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: use --dry-run")'
nvidia-smi -L || true
echo "== gpu tests"
# A failing test is reported, and the figures are still taken.
timeout 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider "${GPU_TESTS[@]}" \
    || echo "gpu tests FAILED (rc $?)"
echo "== figures"
timeout 400 "$PY" bench/gpu_check.py --write --compile
