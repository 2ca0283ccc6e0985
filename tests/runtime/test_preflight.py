"""Preflight verdicts against fake nodes: fake cgroup trees, SLURM variables, HF caches, GPU lists, missing packages."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys

import pytest

from vplan.planner.errors import PreflightError
from vplan.planner.model.behaviours import requirement_spec
from vplan.planner.plan.contract import Quantization
from vplan.planner.search.transformers import requirements
from vplan.runtime.preflight import (GpuInfo, cgroup_memory_limit, host_ram_limit, packages_needed, run_preflight,
                                     slurm_memory_limit)

from .conftest import GIB, layer_map, make_plan

MIB = 1024**2


@pytest.fixture
def cpu_plan(tiny_models):
    return make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), host_ram_bytes=2 * GIB)


@pytest.fixture
def gpu_plan(tiny_models):
    dm = layer_map(4, ["0", "0", "1", "1"], head="0")
    return make_plan(tiny_models["llama"], dm, dtype="bfloat16", gpus=2, gpu_type="A100-40GB", host_ram_bytes=2 * GIB)


def by_name(report):
    return {c.name: c for c in report.checks}


def test_cpu_plan_passes_on_this_machine(cpu_plan, clean_env):
    rep = run_preflight(cpu_plan, gpus=[])
    assert rep.ok, [c.line() for c in rep.failures]
    assert by_name(rep)["gpus"].detail.startswith("CPU-only plan")
    assert by_name(rep)["model files"].ok


def test_no_gpu_for_a_gpu_plan(gpu_plan, clean_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    rep = run_preflight(gpu_plan, gpus=[])
    c = by_name(rep)["gpus"]
    assert not c.ok
    assert c.detail == "0 GPU(s) visible (CUDA_VISIBLE_DEVICES=), the plan needs 2 x A100-40GB"
    assert "--gres=gpu:2" in c.fix
    with pytest.raises(PreflightError) as e:
        rep.raise_for_failures()
    assert e.value.exit_code == 4 and "\n" not in e.value.message


def test_real_probe_on_this_cpu_machine_finds_no_gpu(gpu_plan, clean_env):
    rep = run_preflight(gpu_plan)  # torch.cuda on a CPU build: nothing visible
    assert not by_name(rep)["gpus"].ok


def test_gpu_type_memory_and_capability(gpu_plan, clean_env):
    need0, need1 = (d.total_bytes for d in gpu_plan.gpu_devices)
    gpus = [GpuInfo(0, "NVIDIA A100-SXM4-40GB", 40 * GIB, need0, (8, 0)),
            GpuInfo(1, "Tesla V100-SXM2-32GB", 32 * GIB, need1 - 1, (7, 0))]
    checks = by_name(run_preflight(gpu_plan, gpus=gpus))
    assert checks["gpus"].ok and checks["gpu 0 memory"].ok
    assert "gpu 0 type" not in checks and "gpu 0 capability" not in checks
    assert not checks["gpu 1 type"].ok and "the plan is for A100-40GB" in checks["gpu 1 type"].detail
    assert not checks["gpu 1 capability"].ok and "bfloat16 needs 8.0" in checks["gpu 1 capability"].detail
    assert not checks["gpu 1 memory"].ok


def test_too_little_ram_from_a_fake_cgroup_v2(cpu_plan, clean_env):
    (clean_env["cgroup"] / "job").mkdir()
    (clean_env["cgroup"] / "job" / "memory.max").write_text(str(1 * GIB))
    clean_env["proc"].write_text("0::/job\n")
    limit, src = cgroup_memory_limit()
    assert limit == GIB and src.endswith("job/memory.max")
    c = by_name(run_preflight(cpu_plan, gpus=[]))["host ram"]
    assert not c.ok
    assert c.detail.startswith("job RAM limit 1.0 GiB (") and "the plan needs 2.0 GiB" in c.detail
    assert "sbatch --mem=3G" in c.fix


def test_cgroup_v1_and_parent_limits(clean_env, tmp_path):
    root = clean_env["cgroup"]
    (root / "memory.max").unlink()
    leaf = root / "memory" / "slurm" / "uid_1" / "job_7"
    leaf.mkdir(parents=True)
    (leaf / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1 "unlimited"
    (root / "memory" / "slurm" / "memory.limit_in_bytes").write_text(str(3 * GIB))
    clean_env["proc"].write_text("12:memory:/slurm/uid_1/job_7\n0::/\n")
    assert cgroup_memory_limit()[0] == 3 * GIB


def test_slurm_variables(monkeypatch, clean_env):
    assert slurm_memory_limit({"SLURM_MEM_PER_NODE": "4096"}) == (4096 * MIB, "SLURM_MEM_PER_NODE=4096")
    assert slurm_memory_limit({"SLURM_MEM_PER_CPU": "1000", "SLURM_CPUS_ON_NODE": "4"})[0] == 4000 * MIB
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "1024")
    assert host_ram_limit() == (1024 * MIB, "SLURM_MEM_PER_NODE=1024")


def test_missing_bitsandbytes(tiny_models, clean_env, monkeypatch):
    q = Quantization("bitsandbytes", {"load_in_8bit": True})
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), precision="int8", quantization=q)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    c = by_name(run_preflight(plan, gpus=[]))["package bitsandbytes"]
    assert not c.ok and c.detail == "bitsandbytes is not installed (needed for int8 weights)"
    assert c.fix == "run `pip install 'bitsandbytes'` in this environment"


def test_mxfp4_on_gpu_needs_kernels_and_triton(tiny_models):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["0"] * 4, head="0"), dtype="bfloat16", precision="mxfp4",
                     quantization=Quantization("mxfp4", {"dequantize": False}), gpus=1, gpu_type="H100-80GB",
                     requirements=requirements("mxfp4", ">=5.24,<5.25"))
    names = {d: spec for d, spec, _ in packages_needed(plan)}
    assert names["kernels"] == ">=0.18.2,<0.19" and names["triton"] == ">=3.4"
    deq = dataclasses.replace(plan, quantization=Quantization("mxfp4", {"dequantize": True}),
                              requirements=requirements("bf16", ">=5.24,<5.25"))
    assert "kernels" not in {d for d, _, _ in packages_needed(deq)}
    gptq = dataclasses.replace(plan, precision="gptq-int4", quantization=Quantization("gptq", {}))
    assert "gptqmodel" in {d for d, _, _ in packages_needed(gptq)}


def test_transformers_version_of_the_plan(tiny_models, clean_env):
    import transformers

    here = requirement_spec(transformers.__version__)
    ok = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), requirements=requirements("bf16", here))
    assert by_name(run_preflight(ok, gpus=[]))["package transformers"].ok is True
    old = dataclasses.replace(ok, requirements=requirements("bf16", ">=5.23,<5.24"
                                                              if not transformers.__version__.startswith("5.23") else ">=5.24,<5.25"))
    c = [c for c in run_preflight(old, gpus=[]).checks if c.name == "package transformers" and not c.ok][0]
    assert c.detail.startswith(f"transformers {transformers.__version__} installed, the plan needs >=5.2")
    assert "the memory model was computed for these versions" in c.detail


def test_offline_without_cached_files(tiny_models, clean_env, monkeypatch):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), source="hub", model_id="org/tiny", revision="b" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    c = by_name(run_preflight(plan, gpus=[]))["model files"]
    assert not c.ok
    assert c.detail.startswith(f"HF_HUB_OFFLINE=1 and org/tiny@{'b' * 12} is not in the HF cache ")
    assert f"hf download org/tiny --revision {'b' * 40}" in c.fix
    # the same snapshot laid out in the cache: passes; a missing shard of an index: fails, naming it
    snap = clean_env["hf_home"] / "hub" / "models--org--tiny" / "snapshots" / ("b" * 40)
    snap.mkdir(parents=True)
    for f in tiny_models["llama"].iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    assert by_name(run_preflight(plan, gpus=[]))["model files"].ok
    (snap / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-00002-of-00002.safetensors"}}))
    c = by_name(run_preflight(plan, gpus=[]))["model files"]
    assert not c.ok and "model-00002-of-00002.safetensors" in c.detail


def test_online_download_needs_cache_space(tiny_models, clean_env):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), source="hub", model_id="org/tiny", revision="c" * 40)
    assert by_name(run_preflight(plan, gpus=[]))["hub cache disk"].ok
    huge = dataclasses.replace(plan, hub_cache_bytes=1 << 62)
    c = by_name(run_preflight(huge, gpus=[]))["hub cache disk"]
    assert not c.ok and "HF_HOME" in c.fix


def test_offload_folder_space_and_env(tiny_models, clean_env, monkeypatch, tmp_path):
    plan = make_plan(tiny_models["moe"], layer_map(2, ["cpu", "disk"]), offload_folder=str(tmp_path / "off"))
    c = by_name(run_preflight(plan, gpus=[]))["offload disk"]
    assert c.ok and str(tmp_path / "off") in c.detail
    big = dataclasses.replace(plan, disk_bytes=1 << 62)
    monkeypatch.setenv("VPLAN_OFFLOAD_FOLDER", str(tmp_path / "elsewhere"))
    c = by_name(run_preflight(big, gpus=[]))["offload disk"]
    assert not c.ok and str(tmp_path / "elsewhere") in c.detail and "VPLAN_OFFLOAD_FOLDER" in c.fix


def test_does_not_fit_plan_and_dry_run(gpu_plan, clean_env):
    bad = dataclasses.replace(gpu_plan, status="does-not-fit", reason="needs 300 GiB")
    assert not by_name(run_preflight(bad, gpus=[]))["plan"].ok
    rep = run_preflight(gpu_plan, dry_run=True)
    g = by_name(rep)["gpus"]
    assert g.skipped and g.verdict == "skip" and g.detail.startswith("would check: 2 x A100-40GB visible (GPU 0 >=")
    assert rep.ok and rep.to_dict()["checks"][1]["verdict"] == "skip"


def test_dry_run_does_not_import_torch(gpu_plan, tmp_path):
    from vplan.planner.plan import write_plan

    path = write_plan(gpu_plan, tmp_path / "plan.json")
    code = ("import sys, json; from vplan.planner.plan import read_plan; from vplan.runtime.preflight import run_preflight;"
            f"r = run_preflight(read_plan({str(path)!r}), dry_run=True); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
