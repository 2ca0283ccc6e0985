"""Rendered vLLM jobs on real SLURM, with the CPU build of vLLM standing in for the GPU one: a one-node job on the
single-node cluster and a two-node job on the multi-node cluster (network namespaces) run to COMPLETED and write
every record; the engine's report in each job equals the plan; DeepSeek-V2.5's planned multi-node script is
accepted by a real slurmctld with that many nodes (sbatch --test-only), and refused by one node too few.

The GPU plans' figures that only a GPU shows (the pool after the profiling run, CUDA graphs) are not measured
here: the CPU build stands in for the engine, its pool set by VLLM_CPU_KVCACHE_SPACE through the profile's setup.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.vllm.engine import build_model, cpu_plan, records, require_engine, write_jsonl
from vplan.planner.hardware.cluster import default_profile
from vplan.planner.plan import write_plan
from vplan.planner.slurm.render import render_sbatch
from vplan.planner.slurm.resources import SbatchOptions

from .conftest import live_profile, planned


def sh(args, env, cwd=None, timeout=60):
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_setup(venv: Path, tmp: Path, *, per_node_core: bool) -> tuple[str, ...]:
    """The profile's setup lines that put the CPU build where a GPU cluster has `vllm`: its venv, its KV pool."""
    bind = "export VLLM_CPU_OMP_THREADS_BIND=${SLURM_NODEID:-0}" if per_node_core else ""
    return tuple(x for x in (
        f"source {venv}/bin/activate",
        f"export VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE=1 HF_HOME={tmp}/hf VLLM_CACHE_ROOT={tmp}/vllm-cache",
        f"export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 VPLAN_WEIGHT_PROBE_OUT={tmp}/weights.jsonl",
        bind) if x)


def run_job(script: Path, env, timeout_s: float = 1500) -> str:
    r = sh(["sbatch", "--parsable", str(script)], env, cwd=script.parent)
    assert r.returncode == 0, r.stderr
    jid = r.stdout.strip().split(";")[0]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        out = sh(["scontrol", "show", "job", jid], env).stdout
        state = re.search(r"JobState=(\w+)", out)
        if state and state.group(1) not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            return out
        time.sleep(1)
    sh(["scancel", jid], env)
    raise AssertionError(f"job {jid} did not finish in {timeout_s:.0f} s")


def job_logs(tmp: Path) -> tuple[str, str, str]:
    def read(pattern):
        files = sorted(tmp.glob(pattern))
        return files[0].read_text() if files else ""
    return read("*.out"), read("*.err"), read("*.vllm.log")


def check_records(out: Path, recs: list[dict]) -> None:
    got = [json.loads(x) for x in out.read_text().splitlines()]
    ids = [json.dumps(x["id"]) for x in got]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(json.dumps(r["id"]) for r in recs)
    assert all(x["new_tokens"] == 8 for x in got)


def check_engine_report(err: str, plan) -> None:
    want = f"KV cache tokens: planned {plan.vllm.kv_cache_tokens:,}, engine {plan.vllm.kv_cache_tokens:,} (exact)"
    assert want in err, err[-3000:]


def check_weights(tmp: Path, plan) -> None:
    loaded = sorted((json.loads(x) for x in (tmp / "weights.jsonl").read_text().splitlines()), key=lambda w: w["tp_rank"])
    assert [w["tp_rank"] for w in loaded] == [r.tp_rank for r in plan.vllm.ranks]
    for w, r in zip(loaded, plan.vllm.ranks):
        assert w["param_bytes"] + w["buffers"]["cos_sin_cache"] == r.weights_bytes


def job(tmp_path: Path, model: str, *, tp: int, nodes: int, interface: str | None = None):
    """A CPU-build plan for one tiny model, its prompts, and its rendered script: (plan, records, output, script)."""
    venv = require_engine()
    plan = cpu_plan(build_model(tmp_path / model, model), tp=tp, nodes=nodes, port=free_port())
    write_plan(plan, tmp_path / "plan.json")
    recs = records(8)
    write_jsonl(tmp_path / "in.jsonl", recs)
    out = tmp_path / "out.jsonl"
    prof = replace(live_profile(), network_interface=interface, setup=engine_setup(venv, tmp_path, per_node_core=nodes > 1))
    script = tmp_path / "job.sh"
    script.write_text(render_sbatch(plan, prof, SbatchOptions(plan_path=str(tmp_path / "plan.json"), time="00:30:00",
                                                              input_path=str(tmp_path / "in.jsonl"), output_path=str(out),
                                                              log_dir=str(tmp_path))))
    return plan, recs, out, script


def test_one_node_job_completes_and_resumes(slurm_cluster, tmp_path):
    """TP 1 on one node of the single-node cluster (a sliding-window model: its blocks per request depend on the
    batch); the output already holds three records and a torn line, as a killed job leaves it: the job writes the
    rest, each record once."""
    plan, recs, out, script = job(tmp_path, "mistral-swa", tp=1, nodes=1)
    done = [{"id": r["id"], "output": "w1", "prompt_tokens": 3, "new_tokens": 8, "seconds": 1.0, "tokens_per_s": 8.0,
             "finish_reason": "length"} for r in recs[:3]]
    out.write_text("".join(json.dumps(d) + "\n" for d in done) + '{"id": "r4", "outp')
    state = run_job(script, slurm_cluster)
    stdout, err, vllm_log = job_logs(tmp_path)
    print(stdout[-1500:], err[-2500:], sep="\n")
    assert "JobState=COMPLETED" in state, stdout[-2000:] + err[-3000:] + vllm_log[-3000:]
    assert "Resuming: 3 of 8 records" in err
    check_records(out, recs)
    check_engine_report(err, plan)
    check_weights(tmp_path, plan)
    assert "[vplan] stopping the vLLM server" in stdout


def test_two_node_job_completes(multinode_cluster, tmp_path):
    """Tensor parallel 2 across two nodes (vLLM's mp launcher: --nnodes/--node-rank/--master-addr, the follower
    headless), the nodes talking over their own interface (profile: network_interface = eth0)."""
    plan, recs, out, script = job(tmp_path, "llama-kv1", tp=2, nodes=2, interface="eth0")  # 1 KV head: replicated
    state = run_job(script, multinode_cluster)
    stdout, err, vllm_log = job_logs(tmp_path)
    print(stdout[-1500:], err[-2500:], sep="\n")
    assert "JobState=COMPLETED" in state and "NumNodes=2" in state, stdout[-2000:] + err[-3000:] + vllm_log[-3000:]
    head = re.search(r"head node (\S+) at (\S+);", stdout)
    assert head and head.group(2).startswith(multinode_cluster["MN_NET"] + ".")  # found inside the job, on eth0
    assert "Launching vLLM (v0.32.0) headless" in vllm_log and "1: " in vllm_log  # node 1 ran headless
    check_records(out, recs)
    check_engine_report(err, plan)
    check_weights(tmp_path, plan)


def test_deepseek_multinode_script_is_accepted_by_a_cluster_of_its_size(multinode_cluster, tmp_path):
    ds = planned(["deepseek-ai/DeepSeek-V2.5"], engine="vllm")["deepseek-ai/DeepSeek-V2.5"]
    assert ds.status == "fits" and ds.nodes > 1
    prof = replace(live_profile(), network_interface="eth0")
    opts = SbatchOptions(plan_path=str(tmp_path / "ds.json"), input_path=str(tmp_path / "in.jsonl"),
                         output_path=str(tmp_path / "out.jsonl"))
    script = tmp_path / "ds.sh"
    script.write_text(render_sbatch(ds, prof, opts))
    r = sh(["sbatch", "--test-only", str(script)], multinode_cluster, cwd=tmp_path)
    print(r.stderr.strip())
    assert r.returncode == 0 and f"nodes n[1-{ds.nodes}]" in r.stderr, r.stderr
    bigger = replace(ds, nodes=ds.nodes + 1)  # one node more than the cluster has
    roomy = replace(prof, partitions=(replace(prof.partitions[0], nodes=ds.nodes + 1),))
    (tmp_path / "ds-more.sh").write_text(render_sbatch(bigger, roomy, opts))
    r = sh(["sbatch", "--test-only", str(tmp_path / "ds-more.sh")], multinode_cluster, cwd=tmp_path)
    print(r.stderr.strip())
    assert r.returncode != 0 and "More processors requested than permitted" in r.stderr, r.stderr  # 8 x 4 CPUs > 7 x 4
    assert default_profile().partition().nodes >= ds.nodes
