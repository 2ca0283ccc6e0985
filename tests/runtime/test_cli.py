"""`vplan preflight` and `vplan run` end to end in subprocesses: log lines, exit codes, resuming, a local Hub."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vplan.planner.plan import write_plan

from .conftest import GIB, PROMPTS, layer_map, make_plan

VPLAN = [sys.executable, "-m", "vplan.planner.cli"]


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "HF_", "VPLAN_"))}
    cg = tmp_path / "cg"
    cg.mkdir(exist_ok=True)
    (cg / "memory.max").write_text("max\n")
    (tmp_path / "proc-cgroup").write_text("0::/\n")
    env.update(VPLAN_CGROUP_ROOT=str(cg), VPLAN_PROC_CGROUP=str(tmp_path / "proc-cgroup"), HF_HOME=str(tmp_path / "hf"),
               HF_HUB_DISABLE_PROGRESS_BARS="1", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def _vplan(args, env, timeout=120):
    return subprocess.run(VPLAN + args, capture_output=True, text=True, env=env, timeout=timeout)


def test_import_is_cheap():
    code = "import sys, vplan.runtime, vplan.runtime.cli, vplan.planner.cli.main; print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_cpu_disk_plan_end_to_end(tiny_models, tmp_path):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu", "disk", "disk", "cpu"]), max_new_tokens=6)
    path = write_plan(plan, tmp_path / "plan.json")
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    out = tmp_path / "out.jsonl"
    env = _env(tmp_path)
    r = _vplan(["run", str(path), "--input", str(inp), "--output", str(out), "--report", str(tmp_path / "rep.json")], env)
    assert r.returncode == 0, r.stderr
    log = r.stderr
    print(log)  # shown in the report: the log a user greps
    for line in ("[*] Preflight passed", "[*] No GPU: CPU-only plan", "[*] Device map: explicit from the plan (8 modules; transformers ignores max_memory",
                 "[*] Model loaded successfully!", "[*] Device map: as planned (cpu: 6, disk: 2 modules)",
                 "[*] Memory after load, measured vs planned:", "[*]   cpu: planned ", "[*]   disk: planned ",
                 "[*] record 3/3 id='r2'", "[*] Generated 3 record(s)", "[*] Peak memory, measured vs planned:"):
        assert line in log, line
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in recs] == ["r0", "r1", "r2"] and all(x["new_tokens"] >= 1 for x in recs)
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["load"]["device_map_matches"] is True and rep["run"]["records_done"] == 3
    # rerun: resumes, nothing generated again
    r = _vplan(["run", str(path), "--input", str(inp), "--output", str(out)], env)
    assert r.returncode == 0 and "[*] Resuming: 3 of 3 records already in" in r.stderr
    assert len(out.read_text().splitlines()) == 3


def test_run_prompt_to_stdout(tiny_models, tmp_path):
    path = write_plan(make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), max_new_tokens=5), tmp_path / "p.json")
    r = _vplan(["run", str(path), "--prompt", PROMPTS[0]], _env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().split()) >= 1 and "[*]" not in r.stdout


def test_preflight_failure_exit_code_and_one_line(tiny_models, tmp_path):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), host_ram_bytes=4 * GIB)
    path = write_plan(plan, tmp_path / "plan.json")
    env = _env(tmp_path, SLURM_MEM_PER_NODE="1024")
    r = _vplan(["preflight", str(path)], env)
    assert r.returncode == 4
    assert "[FAIL] host ram: job RAM limit 1.0 GiB (SLURM_MEM_PER_NODE=1024), the plan needs 4.0 GiB" in r.stdout
    err = r.stderr.strip().splitlines()
    assert err == ["vplan: error: preflight: 1 check failed (host ram); fix what the [FAIL] line says and rerun"]
    r = _vplan(["preflight", str(path), "--json"], env)
    data = json.loads(r.stdout)
    assert r.returncode == 4 and data["ok"] is False
    assert [c["name"] for c in data["checks"] if not c["ok"]] == ["host ram"]
    # `vplan run` stops at the same check with the same code, before loading anything
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"id": 1, "prompt": "w1"}\n')
    r = _vplan(["run", str(path), "--input", str(inp), "--output", str(tmp_path / "o.jsonl")], env)
    assert r.returncode == 4 and "Model loaded" not in r.stderr and not (tmp_path / "o.jsonl").exists()
    assert r.stderr.count("job RAM limit 1.0 GiB") == 1  # the failure is said once, then named in the error line
    assert r.stderr.strip().splitlines()[-1].startswith("vplan: error: preflight: 1 check failed (host ram)")


def test_preflight_dry_run_and_usage_errors(tiny_models, tmp_path):
    dm = layer_map(4, ["0", "0", "1", "1"], head="0")
    plan = make_plan(tiny_models["llama"], dm, dtype="bfloat16", gpus=2, gpu_type="A100-40GB")
    path = write_plan(plan, tmp_path / "plan.json")
    env = _env(tmp_path)
    r = _vplan(["preflight", str(path), "--dry-run"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[skip] gpus: would check: 2 x A100-40GB visible (GPU 0 >= " in r.stdout
    r = _vplan(["preflight", str(path)], env)
    assert r.returncode == 4 and "[FAIL] gpus: 0 GPU(s) visible (CUDA_VISIBLE_DEVICES=), the plan needs 2 x A100-40GB" in r.stdout
    r = _vplan(["run", str(path)], env)
    assert r.returncode == 2 and r.stderr.strip() == "vplan: error: give exactly one of --prompt TEXT or --input prompts.jsonl"
    r = _vplan(["run", str(path), "--prompt", "w1", "--temperature", "0.7"], env)
    assert r.returncode == 2 and "--temperature only applies with --do-sample" in r.stderr


def test_load_failure_exit_code_5(tiny_models, tmp_path):
    path = write_plan(make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4)), tmp_path / "plan.json")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny_models["llama"].iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")  # empty checkpoint
    r = _vplan(["run", str(path), "--prompt", "w1", "--model-path", str(broken), "--skip-preflight"], _env(tmp_path))
    err = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 5, r.stderr
    assert err.startswith(f"vplan: error: loading {broken} failed (") and "planned: cpu" in err


def test_run_from_a_local_hub_then_offline(tiny_models, tmp_path):
    hubserver = pytest.importorskip("tests.hubserver")
    with hubserver.HubServer() as hub:
        sha = hub.add_folder("org/tiny-llama", tiny_models["llama"])
        plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), model_id="org/tiny-llama", source="hub",
                         revision=sha, max_new_tokens=4)
        path = write_plan(plan, tmp_path / "plan.json")
        env = _env(tmp_path, HF_ENDPOINT=hub.endpoint)
        r = _vplan(["run", str(path), "--prompt", PROMPTS[1]], env)
        assert r.returncode == 0, r.stderr
        assert f"[*] Loading org/tiny-llama@{sha[:12]} as fp32 (float32) on cpu" in r.stderr
        assert hub.count("GET") > 0
        online_text = r.stdout
        hub.reset_requests()
        # offline: preflight finds the snapshot in the cache, the run makes no request and gives the same text
        off = dict(env, HF_HUB_OFFLINE="1")
        r = _vplan(["run", str(path), "--prompt", PROMPTS[1]], off)
        assert r.returncode == 0, r.stderr
        assert r.stdout == online_text and hub.count() == 0
    # offline with an empty cache: preflight says what to download, exit 4
    r = _vplan(["preflight", str(path)], dict(off, HF_HOME=str(tmp_path / "empty")))
    assert r.returncode == 4 and f"hf download org/tiny-llama --revision {sha}" in r.stdout
