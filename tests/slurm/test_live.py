"""Rendered scripts against a real slurmctld/slurmd (fake GPU GRES): sbatch --test-only verdicts, a real
job and a real array run to completion, and detection of the live cluster."""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vplan.planner.cluster import default_profile
from vplan.planner.detect import profile_from_slurm, run_slurm_commands
from vplan.planner.errors import VplanError
from vplan.planner.hardware import GPU_CATALOG
from vplan.planner.sbatch import SbatchOptions, render_array, render_sbatch

from .conftest import GIB, catalog_plans, live_profile, make_plan

REJECT = "Requested node configuration is not available"


def sh(args, env, cwd=None, timeout=30):
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def submit_test_only(text: str, tmp_path: Path, env) -> subprocess.CompletedProcess:
    f = tmp_path / f"job{abs(hash(text))}.sh"
    f.write_text(text)
    assert sh(["bash", "-n", str(f)], env).returncode == 0
    return sh(["sbatch", "--test-only", str(f)], env, cwd=tmp_path)


def test_catalog_plans_verdicts(slurm_cluster, tmp_path):
    """Every catalog model: what the renderer accepts, the cluster accepts; does-not-fit is refused first."""
    verdicts = {}
    for model_id, plan in catalog_plans():
        try:
            text = render_sbatch(plan, live_profile(), SbatchOptions(plan_path=f"/plans/{model_id.replace('/', '__')}.json"))
        except VplanError as e:
            assert plan.status == "does-not-fit", e.message
            verdicts[model_id] = "refused: " + e.message
            continue
        r = submit_test_only(text, tmp_path, slurm_cluster)
        assert r.returncode == 0 and "to start at" in r.stderr, (model_id, r.stderr)
        verdicts[model_id] = f"accepted ({plan.gpus} GPU, {plan.status})"
    print("\n".join(f"{k}: {v}" for k, v in verdicts.items()))
    assert sum(v.startswith("accepted") for v in verdicts.values()) >= 15
    assert any(v.startswith("refused") for v in verdicts.values())
    assert {re.search(r"\((\d) GPU", v).group(1) for v in verdicts.values() if v.startswith("accepted")} == {"1", "2"}


@pytest.mark.parametrize("form", ["gres-untyped", "gres-typed", "gpus-per-node"])
def test_request_forms_accepted(form, slurm_cluster, tmp_path):
    prof = {"gres-untyped": default_profile(), "gres-typed": live_profile(),
            "gpus-per-node": replace(live_profile(), gpu_request="gpus-per-node")}[form]
    r = submit_test_only(render_sbatch(make_plan(gpus=2), prof, SbatchOptions(plan_path="/p.json")), tmp_path, slurm_cluster)
    assert r.returncode == 0, r.stderr


def _bigger(**part_kw):
    base = live_profile()
    return replace(base, partitions=(replace(base.partitions[0], **part_kw),))


@pytest.mark.parametrize("case,profile,plan,message", [
    ("4 GPUs on a 2-GPU node", lambda: _bigger(gpus_per_node=4), lambda: make_plan(gpus=4), REJECT),
    ("--mem above the node", lambda: _bigger(mem_bytes=512 * 1000**3),
     lambda: make_plan(gpus=1, status="cpu-offload", cpu_weights_bytes=150 * GIB, host_ram_bytes=160 * GIB), REJECT),
    ("--cpus-per-task above the node", lambda: _bigger(cpus_per_node=16), lambda: make_plan(gpus=2),
     "More processors requested than permitted"),
    ("--time above MaxTime", lambda: _bigger(max_time_s=None), lambda: make_plan(decode=1.0, requests=1000),
     "Requested time limit is invalid"),
    ("wrong GRES type", lambda: replace(live_profile(), gres_type_name="h100"), lambda: make_plan(gpus=1), REJECT),
])
def test_what_the_cluster_cannot_hold_is_rejected(case, profile, plan, message, slurm_cluster, tmp_path):
    """A profile that overstates the node: the renderer cannot know, sbatch --test-only tells the user."""
    r = submit_test_only(render_sbatch(plan(), profile(), SbatchOptions(plan_path="/p.json")), tmp_path, slurm_cluster)
    print(f"{case}: rc={r.returncode}: {r.stderr.strip()}")
    assert r.returncode != 0 and message in r.stderr


def _wait(jid: str, env, timeout=60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = sh(["scontrol", "show", "job", jid], env).stdout
        states = re.findall(r"JobState=(\w+)", out)
        if states and all(s not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") for s in states):
            return out
        time.sleep(0.2)
    raise AssertionError(f"job {jid} did not finish in {timeout} s: {out}")


def test_job_runs_to_completion(slurm_cluster, tmp_path):
    plan_path = str(tmp_path / "it's $(plan).json")
    cmd = ("python3", "-c", "import os; print('payload', os.environ['VPLAN_PLAN'], os.environ['CUDA_VISIBLE_DEVICES'], "
           "os.path.isdir(os.environ['VPLAN_OFFLOAD_FOLDER']), os.environ['PYTORCH_CUDA_ALLOC_CONF'], os.environ['HF_HUB_OFFLINE'])")
    text = render_sbatch(make_plan(gpus=2), live_profile(), SbatchOptions(plan_path=plan_path, command=cmd, time="00:05:00"))
    (tmp_path / "job.sh").write_text(text)
    r = sh(["sbatch", "--parsable", str(tmp_path / "job.sh")], slurm_cluster, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jid = r.stdout.strip().split(";")[0]
    info = _wait(jid, slurm_cluster)
    assert "JobState=COMPLETED" in info and "ExitCode=0:0" in info, info
    out = (tmp_path / f"vplan-Qwen3-8B-{jid}.out").read_text()
    assert "[vplan] model: Qwen/Qwen3-8B @ 0123456789abcdef (hub)" in out
    assert "[vplan] status: fits; precision bf16 (compute bfloat16); 2 x A100-40GB" in out
    assert "[vplan] CUDA_VISIBLE_DEVICES=0,1" in out
    assert f"payload {plan_path} 0,1 True expandable_segments:True 1" in out
    assert not list(Path("/tmp").glob(f"vplan-offload-{jid}"))  # trap removed the scratch folder


def test_array_runs_each_plan(slurm_cluster, tmp_path, sandbox):
    plans = [make_plan("Qwen/Qwen3-8B"), make_plan("Qwen/Qwen3-0.6B", weights_bytes=GIB)]
    paths = (str(tmp_path / "a.json"), str(tmp_path / "b c.json"))
    prof = replace(live_profile(), setup=("export PATH=\"$VPLAN_TEST_BIN:$PATH\"",))
    text = render_array(plans, prof, SbatchOptions(plan_paths=paths, time="00:05:00"))
    (tmp_path / "arr.sh").write_text(text)
    env = dict(slurm_cluster, VPLAN_TEST_BIN=str(sandbox / "bin"), VPLAN_ARGV_FILE=str(tmp_path / "argv-%s.txt"))
    r = sh(["sbatch", "--parsable", "--export=ALL", str(tmp_path / "arr.sh")], env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jid = r.stdout.strip().split(";")[0]
    info = _wait(jid, slurm_cluster)
    assert info.count("JobState=COMPLETED") == 2, info
    for i, p in enumerate(paths):
        out = (tmp_path / f"vplan-array-{jid}_{i}.out").read_text()
        assert f"[vplan] plan: {p}" in out and "fake vplan ran" in out and re.search(r"CUDA_VISIBLE_DEVICES=[01]\n", out)


def test_detect_live_cluster(slurm_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_cluster["SLURM_CONF"])
    d = profile_from_slurm(*run_slurm_commands())
    part = d.profile.partitions[0]
    assert d.profile.gres_typed and d.profile.gres_type_name == "a100"
    assert (part.name, part.gpu, part.gpus_per_node, part.cpus_per_node, part.mem_bytes, part.max_time_s) == \
        ("gpu", GPU_CATALOG["A100-40GB"], 2, 4, 122070 * 1024**2, 2 * 86400)
    # a plan rendered against the detected profile is accepted by the cluster it came from
    assert render_sbatch(make_plan(gpus=2), d.profile, SbatchOptions(plan_path="/p.json")).count("--gres=gpu:a100:2") == 1
