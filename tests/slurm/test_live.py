"""Rendered scripts against a real slurmctld/slurmd (fake GPU GRES): sbatch --test-only verdicts, a real
job and a real array run to completion, and detection of the live cluster."""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from vplan.planner.hardware.cluster import default_profile
from vplan.planner.slurm.detect import profile_from_slurm, run_slurm_commands
from vplan.planner.errors import VplanError
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.plan import write_plan
from vplan.planner.slurm.render import SbatchOptions, render_array, render_sbatch, sanitise_job_name
from vplan.planner.units import gib
from vplan.runtime.preflight import cgroup_memory_limit

from .conftest import GIB, live_profile, make_plan, planned

REJECT = "Requested node configuration is not available"


def sh(args, env, cwd=None, timeout=30):
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def submit_test_only(text: str, tmp_path: Path, env) -> subprocess.CompletedProcess:
    f = tmp_path / f"job{abs(hash(text))}.sh"
    f.write_text(text)
    assert sh(["bash", "-n", str(f)], env).returncode == 0
    return sh(["sbatch", "--test-only", str(f)], env, cwd=tmp_path)


@pytest.mark.parametrize("form", ["gres-untyped", "gres-typed", "gpus-per-node"])
def test_request_forms_accepted(form, slurm_cluster, tmp_path):
    prof = {"gres-untyped": default_profile(), "gres-typed": live_profile(),
            "gpus-per-node": replace(live_profile(), gpu_request="gpus-per-node")}[form]
    r = submit_test_only(render_sbatch(make_plan(gpus=2), prof, SbatchOptions(plan_path="/p.json", prompt="Hello")), tmp_path, slurm_cluster)
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
    r = submit_test_only(render_sbatch(plan(), profile(), SbatchOptions(plan_path="/p.json", prompt="Hello")), tmp_path, slurm_cluster)
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


def _hf_cache_with(model_id: str, root: Path) -> Path:
    """An HF cache (hub/models--ORG--NAME/refs/main + snapshots/SHA) holding the catalog's config.json and a
    valid safetensors file: what `hf download` leaves, as far as preflight's file check looks (presence)."""
    from vplan.planner.source import catalog

    repo = root / "hub" / ("models--" + model_id.replace("/", "--"))
    sha = "0" * 39 + "1"
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    (snap / "config.json").write_text(json.dumps(catalog.load(model_id)["config"]))
    header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    (snap / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return root


@pytest.mark.parametrize("cached", [True, False], ids=["model-cached", "model-missing"])
def test_job_runs_real_preflight(cached, slurm_cluster, tmp_path):
    """A real plan, rendered and submitted; the job runs `vplan preflight --dry-run "$VPLAN_PLAN"` (the venv's
    vplan, put on PATH by the profile's setup line) on the node: with --mem as the job's RAM limit, the
    profile's HF_HOME and HF_HUB_OFFLINE=1. Without the model in the cache the job fails with exit 4."""
    model = "Qwen/Qwen3-32B" if cached else "Qwen/Qwen3-0.6B"
    plan = planned([model])[model]
    assert plan.status == "fits" and plan.gpus == (2 if cached else 1)
    hf_home = tmp_path / "hf"
    _hf_cache_with(model, hf_home) if cached else hf_home.mkdir()
    plan_path = write_plan(plan, tmp_path / "it's $(plan).json")
    prof = replace(live_profile(), hf_home=str(hf_home), setup=(f'export PATH="{Path(sys.executable).parent}:$PATH"',))
    # the user's command is argv, shell-quoted verbatim: `$VPLAN_PLAN` expands only inside `bash -c`
    cmd = ("bash", "-c", 'vplan preflight --dry-run "$VPLAN_PLAN"')
    text = render_sbatch(plan, prof, SbatchOptions(plan_path=str(plan_path), time="00:05:00", command=cmd))
    assert text.rstrip().endswith("""bash -c 'vplan preflight --dry-run "$VPLAN_PLAN"'""")
    (tmp_path / "job.sh").write_text(text)
    mem = re.search(r"^#SBATCH --mem=(\d+)G$", text, re.M).group(1)
    r = sh(["sbatch", "--parsable", str(tmp_path / "job.sh")], slurm_cluster, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    jid = r.stdout.strip().split(";")[0]
    info = _wait(jid, slurm_cluster, timeout=90)
    stem = tmp_path / f"{sanitise_job_name(model)}-{jid}"
    out, err = Path(f"{stem}.out").read_text(), Path(f"{stem}.err").read_text()
    print(out, err)
    devices = "0,1" if cached else "0"
    assert f"[vplan] model: {model} @ unpinned revision (catalog)" in out
    assert f"[vplan] status: fits; precision {plan.precision} (compute {plan.dtype}); {plan.gpus} x A100-40GB" in out
    assert f"[vplan] CUDA_VISIBLE_DEVICES={devices}\n" in out
    assert f"[vplan] plan: {plan_path}\n" in out
    # the preflight's own lines (stdout is a file: plain `[verdict] name: detail` lines)
    assert f"[ok] plan: {model} {plan.precision} on {plan.gpus} x A100-40GB, status fits\n" in out
    per_gpu = ", ".join(f"GPU {d.device} >= {gib(d.total_bytes)} free" for d in plan.gpu_devices)
    assert f"[skip] gpus: would check: {plan.gpus} x A100-40GB visible ({per_gpu})\n" in out
    cg, _ = cgroup_memory_limit()
    limit = int(mem) * GIB
    if cg is None or cg > limit:  # --mem is the tightest limit: preflight must have read it from SLURM
        assert f"[ok] host ram: job RAM limit {gib(limit)} (SLURM_MEM_PER_NODE={int(mem) * 1024}), " \
               f"the plan needs {gib(plan.host_ram_bytes)}\n" in out
    else:
        assert f"the plan needs {gib(plan.host_ram_bytes)}" in out
    assert re.search(r"^\[ok\] package torch: torch \S+$", out, re.M) and "[ok] package transformers:" in out
    if cached:
        assert f"[ok] model files: {model}@main is complete in the HF cache ({hf_home}/hub/models--" in out
        assert "JobState=COMPLETED" in info and "ExitCode=0:0" in info, info
        assert f"preflight passed (dry run: GPU checks not run): {plan_path} can run here" in err
    else:
        assert f"[FAIL] model files: HF_HUB_OFFLINE=1 and {model}@main is not in the HF cache {hf_home}/hub; " \
               f"download it where the Hub is reachable: `hf download {model} --revision main` with the same HF_HOME" in out
        assert "JobState=FAILED" in info and "ExitCode=4:0" in info, info
        assert "vplan: error: preflight: 1 check failed (model files)" in err
    assert not list(Path("/tmp").glob(f"vplan-offload-{jid}"))  # trap removed the scratch folder


def test_array_runs_each_plan(slurm_cluster, tmp_path, sandbox):
    plans = [make_plan("Qwen/Qwen3-8B"), make_plan("Qwen/Qwen3-0.6B", weights_bytes=GIB)]
    paths = (str(tmp_path / "a.json"), str(tmp_path / "b c.json"))
    prof = replace(live_profile(), setup=("export PATH=\"$VPLAN_TEST_BIN:$PATH\"",))
    text = render_array(plans, prof, SbatchOptions(plan_paths=paths, time="00:05:00", prompt="Hello"))
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
    assert render_sbatch(make_plan(gpus=2), d.profile, SbatchOptions(plan_path="/p.json", prompt="Hello")).count("--gres=gpu:a100:2") == 1
