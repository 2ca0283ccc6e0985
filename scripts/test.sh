#!/usr/bin/env bash
# The one test command (README "Tests"; .ci/run calls exactly this):
# a virtual environment with the runtime and test extras, a real single-node SLURM for the
# render-sbatch tests (Debian packages, root), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VPLAN_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# torch first, pinned: 2.13.0 is the CPU build on this machine's wheel cache; any other spec pulls CUDA.
"$VENV/bin/pip" install -q --disable-pip-version-check torch==2.13.0
"$VENV/bin/pip" install -q --disable-pip-version-check -e '.[runtime,test]'
if [ -x scripts/install-slurm.sh ]; then
    bash scripts/install-slurm.sh
fi
export PATH="$PWD/$VENV/bin:$PATH"
exec "$VENV/bin/python" -m pytest "$@"
