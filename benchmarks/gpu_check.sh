#!/bin/bash
# The GPU check (benchmarks/gpu_check.py) on a fresh machine that has only a CUDA build
# of torch: installs the project from this repository when it is missing, then runs.
#
#   bash benchmarks/gpu_check.sh                 # on the GPU, Clinica's 1.5 mm grid
#   bash benchmarks/gpu_check.sh --device cpu --smoke
#
# Fits in 8 minutes on one GPU. Arguments go to gpu_check.py (--out FILE.tsv keeps the
# table).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if ! "$python" -c "import neuromask" 2>/dev/null; then
    # no constraints file: keep the CUDA build of torch that is already there
    "$python" -m pip install --quiet -e "$here/.."
fi
exec "$python" "$here/gpu_check.py" "$@"
