"""sbatch scripts of vLLM plans: golden files (one node; DeepSeek-V2.5 across 7 nodes, the planner's own plan), what
may reach them, the resource request, and the job's behaviour run with stand-in commands (health wait, its
timeout and failure, cleanup of the server's whole process group on exit and on cancel)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests import plans
from vplan.planner.errors import ClusterError, UsageError
from vplan.planner.hardware.cluster import default_profile
from vplan.planner.plan import read_plan
from vplan.planner.slurm.render import render_array, render_sbatch
from vplan.planner.slurm.resources import SbatchOptions

from .conftest import planned
from .test_render import bash_n, check_golden

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "vllm"
IO = dict(input_path="/work/data/prompts.jsonl", output_path="/work/data/out.jsonl")


def opts(**kw) -> SbatchOptions:
    return SbatchOptions(plan_path=kw.pop("plan_path", "/work/plans/llama.json"), **kw)


@pytest.fixture(scope="module")
def deepseek():
    return planned(["deepseek-ai/DeepSeek-V2.5"], engine="vllm")["deepseek-ai/DeepSeek-V2.5"]


def test_one_node(tmp_path):
    """The one-node layout (its whole text is run by the job tests below; the shared parts are in the golden file)."""
    prof = replace(default_profile(), hf_home="/shared/hf-cache/$USER", setup=("source /opt/venvs/vllm/bin/activate",))
    text = render_sbatch(plans.vllm_plan(), prof, opts(**IO))
    bash_n(text, tmp_path)
    lines = text.splitlines()
    for want in ("#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:2", 'export HF_HOME="/shared/hf-cache/$USER"',
                 "export HF_HUB_OFFLINE=1", "export VPLAN_PORT=8000", "vplan preflight \"$VPLAN_PLAN\"",
                 'vplan run "$VPLAN_PLAN" --endpoint "$VPLAN_ENDPOINT" --engine-log "$VPLAN_VLLM_LOG" '
                 "--input /work/data/prompts.jsonl --output /work/data/out.jsonl"):
        assert want in lines, want
    start = next(x for x in lines if x.startswith("setsid vllm serve"))
    assert start == ("setsid vllm serve meta-llama/Llama-3.1-8B-Instruct --revision 0e9e39f249a16976918f6564b8830bc894c89659 "
                     "--dtype bfloat16 --tensor-parallel-size 2 --pipeline-parallel-size 1 --kv-cache-dtype auto --max-model-len 8192 "
                     "--gpu-memory-utilization 0.9 --max-num-seqs 256 --max-num-batched-tokens 2048 --block-size 16 "
                     '--host 127.0.0.1 --port "$VPLAN_PORT" >"$VPLAN_VLLM_LOG" 2>&1 &')
    assert "srun" not in text and "--nnodes" not in text


def test_golden_deepseek_seven_nodes(tmp_path):
    """The planner's DeepSeek-V2.5 plan on the default nodes, kept as a file (tests/fixtures/vllm) so that tuning the
    planner's numbers does not move this golden script; the live plan is rendered and submitted in test_vllm_jobs."""
    deepseek = read_plan(FIXTURES / "deepseek-v2.5.plan.json")
    assert deepseek.status == "fits" and deepseek.nodes == 7 and deepseek.vllm.pipeline_parallel_size == 7
    prof = replace(default_profile(), network_interface="ib0", setup=("module load cuda/12.4", "source /opt/venvs/vllm/bin/activate"))
    text = render_sbatch(deepseek, prof, opts(plan_path="/work/plans/deepseek-v2.5.json", **IO))
    bash_n(text, tmp_path)
    check_golden("vllm_deepseek_v2.5_7nodes.sh", text)
    for want in ("#SBATCH --nodes=7", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:2", "--pipeline-parallel-size 7",
                 "--nnodes 7", "export NCCL_SOCKET_IFNAME=ib0 GLOO_SOCKET_IFNAME=ib0", "ip -4 -o addr show dev ib0",
                 "--kill-on-bad-exit=1", '--engine-log "$VPLAN_VLLM_LOG"'):
        assert want in text, want


def test_request_is_the_plans_per_node(deepseek):
    text = render_sbatch(deepseek, default_profile(), opts(**IO))
    gib = -(-(deepseek.host_ram_bytes + max(-(-deepseek.host_ram_bytes // 10), 4 << 30)) // (1 << 30))
    assert f"#SBATCH --mem={gib}G" in text and "#SBATCH --cpus-per-task=4" in text
    minutes = int(-(-(deepseek.speed.job_seconds(1) * 1.5 + 600) // 60))
    assert f"#SBATCH --time={minutes // 60:02d}:{minutes % 60:02d}:00" in text


def test_hostile_values_stay_words(tmp_path):
    """(The job tests below run a script whose paths are hostile, and check what reached each command.)"""
    cmd = render_sbatch(plans.vllm_plan(), default_profile(), opts(command=(
        "python", "agent.py", "--base-url", "$VPLAN_ENDPOINT", "--model", "${VPLAN_MODEL}", "$(reboot)", "$HOME")))
    assert cmd.rstrip().endswith("""python agent.py --base-url "$VPLAN_ENDPOINT" --model "$VPLAN_MODEL" '$(reboot)' '$HOME'""")
    with pytest.raises(UsageError, match="Hugging Face token"):
        render_sbatch(plans.vllm_plan(), default_profile(), opts(command=("python", "x.py", "HF_TOKEN=hf_" + "a" * 34)))


def test_a_prompt_goes_to_the_jobs_server():
    """--prompt works for a vLLM job as for a transformers one: the client line, through the job's server."""
    text = render_sbatch(plans.vllm_plan(), default_profile(), opts(prompt="Say $(hi) in 'one' word"))
    line = """vplan run "$VPLAN_PLAN" --endpoint "$VPLAN_ENDPOINT" --engine-log "$VPLAN_VLLM_LOG" """
    assert line + """--prompt 'Say $(hi) in '"'"'one'"'"' word'""" in text


def test_what_cannot_be_rendered():
    with pytest.raises(UsageError, match=r"the job needs work to do.*finds the job's server in \$VPLAN_ENDPOINT"):
        render_sbatch(plans.vllm_plan(), default_profile(), opts())
    with pytest.raises(UsageError, match="--input needs --output"):
        render_sbatch(plans.vllm_plan(), default_profile(), opts(input_path="/a.jsonl"))
    few = replace(default_profile(), partitions=(replace(default_profile().partitions[0], nodes=2),))
    with pytest.raises(ClusterError, match="needs 4 nodes but partition 'gpu' has 2"):
        render_sbatch(plans.vllm_plan(nodes=4, args=plans.vllm_args(tp=2, pp=4, nodes=4)), few, opts(**IO))
    with pytest.raises(UsageError, match="network_interface"):
        render_sbatch(plans.vllm_plan(), replace(default_profile(), network_interface="eth0; reboot"), opts(**IO))
    with pytest.raises(UsageError, match="vLLM plan: each runs its own server job"):
        render_array([plans.vllm_plan()], default_profile(), SbatchOptions(plan_paths=("/p.json",)))


# ------------------------------------------------------------------------------------------ the job itself
FAKE_VLLM = r"""#!/bin/bash
# stand-in for `vllm serve`: a child that must not outlive the job, then (per FAKE_VLLM) serve /health, die, or hang
echo "$$" >"$FAKE_DIR/server.pid"
printf '%s\n' "$@" >"$FAKE_DIR/vllm.argv"
sleep 1000 & echo "$!" >"$FAKE_DIR/child.pid"
port="${@: -1}"
case "$FAKE_VLLM" in
  die) echo "ValueError: the engine failed: CUDA out of memory (stand-in)"; exit 1 ;;
  hang) sleep 1000 ;;
  *) mkdir -p "$FAKE_DIR/www"; : >"$FAKE_DIR/www/health"; cd "$FAKE_DIR/www"
     exec python3 -m http.server "$port" --bind 127.0.0.1 ;;
esac
"""
FAKE_VPLAN = r"""#!/bin/bash
printf '%s\n' "$@" >"$FAKE_DIR/vplan.$1.argv"
if [ "$1" = run ]; then echo started >"$FAKE_DIR/run.started"; sleep "${FAKE_RUN_S:-0}"; fi
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HOSTILE = "a'; touch pwned #/$(touch pwned) `touch pwned`"


def _job(tmp_path: Path, mode: str, *, run_s: float = 0, timeout_s: int = 60):
    """The rendered one-node job, run by bash with stand-in `vllm` and `vplan`; the model folder, plan, prompts and
    results live under a hostile folder name."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    base = tmp_path / HOSTILE
    base.mkdir(parents=True)
    for name, text in (("vllm", FAKE_VLLM), ("vplan", FAKE_VPLAN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    plan = plans.vllm_plan(args=plans.vllm_args(port=_free_port()), model_id=str(base / "model"), source="local", revision=None)
    prof = replace(default_profile(), setup=(f"export PATH={bin_dir}:$PATH",))
    script = tmp_path / "job.sh"
    script.write_text(render_sbatch(plan, prof, SbatchOptions(
        plan_path=str(base / "plan.json"), log_dir=str(tmp_path), input_path=str(base / "in.jsonl"),
        output_path=str(base / "out.jsonl"))))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(FAKE_DIR=str(tmp_path), FAKE_VLLM=mode, FAKE_RUN_S=str(run_s), VPLAN_HEALTH_TIMEOUT_S=str(timeout_s))
    return subprocess.Popen(["bash", str(script)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def _gone(tmp_path: Path) -> bool:
    for name in ("server.pid", "child.pid"):
        pid = int((tmp_path / name).read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stat = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "Z"
        if stat != "Z":
            return False
    return True


def test_job_waits_for_health_runs_the_client_and_stops_the_server(tmp_path):
    p = _job(tmp_path, "serve")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    base = tmp_path / HOSTILE
    assert (tmp_path / "vplan.preflight.argv").read_text().splitlines() == ["preflight", str(base / "plan.json")]
    run = (tmp_path / "vplan.run.argv").read_text().splitlines()
    assert run[:3] == ["run", str(base / "plan.json"), "--endpoint"] and run[3].startswith("http://127.0.0.1:")
    assert run[4] == "--engine-log" and run[5] == str(tmp_path / f"vplan-model-{p.pid}.vllm.log")  # no SLURM_JOB_ID: $$
    assert run[6:] == ["--input", str(base / "in.jsonl"), "--output", str(base / "out.jsonl")]
    assert (tmp_path / "vllm.argv").read_text().splitlines()[:2] == ["serve", str(base / "model")]
    assert "[vplan] vLLM is serving" in out and "[vplan] stopping the vLLM server" in out
    assert not list(tmp_path.rglob("pwned")) and _gone(tmp_path)


def test_a_server_that_dies_fails_the_job_with_its_log(tmp_path):
    p = _job(tmp_path, "die")
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1
    assert "the vLLM server exited before it answered /health" in err and "CUDA out of memory (stand-in)" in err
    assert not (tmp_path / "run.started").exists() and _gone(tmp_path)


def test_a_server_that_never_answers_times_out(tmp_path):
    p = _job(tmp_path, "hang", timeout_s=3)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "did not answer /health within 3 s" in err
    assert _gone(tmp_path)


def test_cancel_stops_every_process(tmp_path):
    p = _job(tmp_path, "serve", run_s=300)
    deadline = time.time() + 60
    while not (tmp_path / "run.started").exists():
        assert time.time() < deadline and p.poll() is None, p.stderr.read() if p.poll() is not None else "no start"
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGTERM)  # what scancel does: SIGTERM to the job's processes
    out, err = p.communicate(timeout=120)
    assert p.returncode == 143 and "[vplan] stopping the vLLM server" in out
    assert _gone(tmp_path)
