#!/usr/bin/env bash
# The GPU check: one prepared run for a lent GPU machine (at most 8 minutes).
#
# On the GPU machine torch, torchvision, h5py, scikit-learn, click, tqdm and
# matplotlib are installed; featx and what it needs beyond them travel as wheels
# in .whl/ (ignored by git). Prepare them here, in the repository's root:
#
#   echo /.whl/ >> .git/info/exclude
#   pip wheel --no-deps -w .whl .
#   pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     skops pillow-heif protobuf threadpoolctl pytest pluggy iniconfig
#
# then run `bash benchmarks/gpu_check.sh` there with .whl carried. It installs
# the wheels, runs `pytest -m gpu`, and `benchmarks/bench_gpu.py` (20,000 JPEGs
# made on the spot; F, D_cpu, D_gpu, E2E with each decoder, GPU rows against CPU
# rows on 200 images), which writes benchmarks/results-gpu.json and prints it.
#
#   bash benchmarks/gpu_check.sh --dry-run   # here, on the CPU, at a small size
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 FEATX_OFFLINE=1

if [ "${1:-}" = "--dry-run" ]; then
  echo "--- dry run on this machine: small sizes, the CPU twin for D_gpu"
  python -m pytest -m gpu -q -p no:cacheprovider
  python benchmarks/bench_gpu.py --images 64 --workers 2 --batch-size 16 \
    --compare 8 --out "${OUT:-/tmp}/results-gpu-dry.json"
  exit 0
fi

echo "--- installing featx and its missing packages from .whl"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
python3 -c "import featx, torch; print('featx', featx.__version__, 'torch', \
torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "--- pytest -m gpu"
timeout 150 python3 -m pytest -m gpu -q -p no:cacheprovider -x || echo "gpu tests failed"

echo "--- benchmark"
timeout 300 python3 benchmarks/bench_gpu.py --images 20000 --workers 16 \
  --out benchmarks/results-gpu.json
if [ -n "${OUT:-}" ]; then cp benchmarks/results-gpu.json "$OUT/"; fi
