"""Real plans (the planner's own search, every catalog model, default profile) through render-sbatch and a
live SLURM cluster shaped like the default profile: what the renderer writes, the cluster accepts; the
requested GPUs and memory are the plan's; does-not-fit is refused (exit 3, with the plan's reason)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from vplan.planner.source.catalog import list_ids
from vplan.planner.hardware.cluster import default_profile
from vplan.planner.errors import NoFittingPlanError
from vplan.planner.plan import plan_to_dict, read_plan, write_plan
from vplan.planner.slurm.render import render_arrays, render_sbatch
from vplan.planner.slurm.resources import SbatchOptions

VPLAN = str(Path(sys.executable).parent / "vplan")
NODE_MEM_BYTES = 128 * 1000**3
NODE_CPUS = 4


def directives(text: str) -> dict[str, str]:
    return dict(m.groups() for m in re.finditer(r"^#SBATCH --([a-z-]+)=(\S+)$", text, re.M))


def mem_bytes(flag: str) -> int:
    n, unit = int(flag[:-1]), flag[-1]
    return n * {"G": 1024**3, "M": 1024**2}[unit]


def check_request(text: str, plan) -> dict[str, str]:
    """The request is the plan's: GPU count, host RAM (with the margin), within the node."""
    d = directives(text)
    assert d["gres"] == f"gpu:{plan.gpus}", (plan.model_id, d)
    assert plan.host_ram_bytes <= mem_bytes(d["mem"]) <= NODE_MEM_BYTES, (plan.model_id, d["mem"], plan.host_ram_bytes)
    assert 1 <= int(d["cpus-per-task"]) <= NODE_CPUS
    return d


def submit_test_only(text: str, tmp_path: Path, env, name: str) -> subprocess.CompletedProcess:
    f = tmp_path / f"{name}.sh"
    f.write_text(text)
    r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, (name, r.stderr)
    return subprocess.run(["sbatch", "--test-only", str(f)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)


def cli(args, env=None, cwd=None):
    return subprocess.run([VPLAN, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_every_catalog_model_is_planned(real_plans):
    assert sorted(real_plans) == list_ids() and len(real_plans) >= 20
    statuses = {p.status for p in real_plans.values()}
    assert "fits" in statuses and "does-not-fit" in statuses
    assert real_plans["deepseek-ai/DeepSeek-V2.5"].status == "does-not-fit"
    assert {p.gpus for p in real_plans.values() if p.status != "does-not-fit"} == {1, 2}


def test_real_plans_verdicts(real_plans, slurm_cluster, tmp_path):
    """Every catalog model on the default profile: rendered -> bash -n -> sbatch --test-only accepts it, with
    --gres = plan.gpus and --mem >= plan.host_ram_bytes; does-not-fit plans are refused before SLURM sees them."""
    verdicts = {}
    for mid, plan in real_plans.items():
        opts = SbatchOptions(plan_path=f"/plans/{mid.replace('/', '__')}.json", prompt="Hello")
        if plan.status == "does-not-fit":
            with pytest.raises(NoFittingPlanError) as e:
                render_sbatch(plan, default_profile(), opts)
            assert plan.reason and plan.reason in e.value.message
            verdicts[mid] = "refused: " + e.value.message
            continue
        text = render_sbatch(plan, default_profile(), opts)
        d = check_request(text, plan)
        r = submit_test_only(text, tmp_path, slurm_cluster, mid.replace("/", "__"))
        assert r.returncode == 0 and "to start at" in r.stderr, (mid, r.stderr)
        verdicts[mid] = f"accepted: {plan.status} {plan.precision} --gres={d['gres']} --mem={d['mem']} " \
                        f"--cpus-per-task={d['cpus-per-task']} --time={d['time']}"
    print("\n" + "\n".join(f"{k}: {v}" for k, v in verdicts.items()))
    assert verdicts["deepseek-ai/DeepSeek-V2.5"].startswith("refused")
    assert sum(v.startswith("accepted") for v in verdicts.values()) >= 15


def test_does_not_fit_cli_exit_3_unless_force(real_plans, slurm_cluster, tmp_path):
    """`vplan render-sbatch` on a real does-not-fit plan: exit 3, the plan's reason, nothing on stdout;
    with --force a script with the warning in its header, which the cluster accepts."""
    bad = {m: p for m, p in real_plans.items() if p.status == "does-not-fit"}
    assert "deepseek-ai/DeepSeek-V2.5" in bad
    for mid, plan in bad.items():
        path = write_plan(plan, tmp_path / f"{mid.replace('/', '__')}.json")
        r = cli(["render-sbatch", str(path)])
        assert r.returncode == 3 and r.stdout == "", (mid, r.returncode, r.stderr)
        assert r.stderr.strip() == (f"vplan: error: plan {mid} does not fit: {plan.reason}; "
                                    "re-plan (vplan check lists what would run) or pass --force to render it anyway")
        out = tmp_path / f"forced-{mid.replace('/', '__')}.sh"
        r = cli(["render-sbatch", str(path), "-o", str(out), "--force", "--prompt", "Hello"])
        assert r.returncode == 0, r.stderr
        text = out.read_text()
        assert f"# WARNING (--force): the plan does not fit: {plan.reason}" in text
        check_request(text, plan)
        r = submit_test_only(text, tmp_path, slurm_cluster, out.stem)
        assert r.returncode == 0 and "to start at" in r.stderr, (mid, r.stderr)


def test_real_plans_array_split_by_gpu_shape(real_plans, slurm_cluster, tmp_path):
    """All runnable catalog plans as arrays: one script per GPU count, each accepted by the cluster."""
    ok = [(m, p) for m, p in real_plans.items() if p.status != "does-not-fit"]
    paths = tuple(f"/plans/{m.replace('/', '__')}.json" for m, _ in ok)
    scripts = render_arrays([p for _, p in ok], default_profile(), SbatchOptions(plan_paths=paths, prompt="Hello"))
    assert sorted(g.key[2] for g, _ in scripts) == [1, 2]
    for g, text in scripts:
        members = [ok[i][1] for i in g.indices]
        d = directives(text)
        assert d["gres"] == f"gpu:{g.key[2]}" and d["array"] == f"0-{len(members) - 1}"
        assert all(p.gpus == g.key[2] for p in members)
        assert mem_bytes(d["mem"]) >= max(p.host_ram_bytes for p in members)
        r = submit_test_only(text, tmp_path, slurm_cluster, f"array{g.suffix}")
        assert r.returncode == 0 and "to start at" in r.stderr, r.stderr


def test_vplan_plan_cli_matches_the_api_and_renders(real_plans, slurm_cluster, tmp_path):
    """`vplan plan` in a subprocess writes the same plan the API gives; its script is accepted; DeepSeek-V2.5
    exits 3 (the plan is still written) and render-sbatch refuses it."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), VPLAN_CACHE=str(tmp_path / "vc"))
    env.pop("HF_HUB_CACHE", None)
    for mid, want_rc in (("Qwen/Qwen3-32B", 0), ("deepseek-ai/DeepSeek-V2.5", 3)):
        path = tmp_path / f"{mid.replace('/', '__')}.json"
        r = cli(["plan", mid, "-o", str(path)], env=env)
        assert r.returncode == want_rc and f"wrote {path}" in r.stderr, r.stderr
        got, want = plan_to_dict(read_plan(path)), plan_to_dict(real_plans[mid])
        for d in (got, want):
            d.pop("created_at", None), d.pop("vplan_version", None)
        assert got == want
    ok = tmp_path / "Qwen__Qwen3-32B.json"
    r = cli(["render-sbatch", str(ok), "-o", str(tmp_path / "job.sh"), "--prompt", "Hello"], env=env)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "job.sh").read_text()
    check_request(text, real_plans["Qwen/Qwen3-32B"])
    assert f"export VPLAN_PLAN={ok}" in text
    r = submit_test_only(text, tmp_path, slurm_cluster, "cli-job")
    assert r.returncode == 0 and "to start at" in r.stderr, r.stderr
    r = cli(["render-sbatch", str(tmp_path / "deepseek-ai__DeepSeek-V2.5.json")], env=env)
    assert r.returncode == 3 and real_plans["deepseek-ai/DeepSeek-V2.5"].reason in r.stderr
