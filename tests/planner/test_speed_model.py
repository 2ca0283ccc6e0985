"""The speed model's structure on catalog models (the numbers themselves are held to the published measurements
in test_speed_evidence.py): the int8-nodecomp precision, the 4-bit batch switch, host-bound steps, load time by
storage kind, and the assumptions every plan states."""
from __future__ import annotations

import dataclasses

import pytest

from vplan.planner.api import CheckOptions, check_one
from vplan.planner.errors import UsageError
from vplan.planner.hardware.cluster import STORAGE_BYTES_PER_S, ClusterProfile, Partition, profile_for_gpu
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.memory import weights
from vplan.planner.plan.contract import Quantization, Workload
from vplan.planner.search import precision as policy
from vplan.planner.search.core import SearchOptions, search
from vplan.planner.units import GB

LLAMA8 = "meta-llama/Llama-3.1-8B"


@pytest.fixture(scope="module")
def spec():
    return check_one(LLAMA8, options=CheckOptions(offline=True, suggest=False)).spec


def _plan(spec, precision=None, gpu="H100-80GB", batch=1, profile=None, **kw):
    wl = Workload(context_tokens=164, prompt_tokens=64, max_new_tokens=100, batch=batch)
    prof = profile or profile_for_gpu(gpu, 1)
    return search(spec, prof, SearchOptions(workload=wl, precision=precision, **kw))


def test_int8_nodecomp_is_offered_not_chosen(spec):
    res = _plan(spec)
    assert res.plan.precision == "bf16"
    alt = [a for a in res.alternatives if a.precision == "int8-nodecomp"]
    assert alt and alt[0].status == "fits"
    assert alt[0].quantization == Quantization("bitsandbytes", {"load_in_8bit": True, "llm_int8_threshold": 0.0})
    assert alt[0].conditions[0] == policy.NODECOMP_CONDITION and policy.NODECOMP_OFFER in alt[0].conditions
    assert "bitsandbytes" in alt[0].requirements


def test_int8_nodecomp_holds_int8_bytes_and_runs_faster(spec):
    int8 = _plan(spec, "int8").plan
    nodecomp = _plan(spec, "int8-nodecomp").plan
    assert nodecomp.precision == "int8-nodecomp" and nodecomp.dtype == int8.dtype
    assert [d.weights_bytes for d in nodecomp.devices] == [d.weights_bytes for d in int8.devices]
    assert sum(d.weights_bytes for d in int8.devices) == weights.weight_bytes(spec, "int8")
    assert int8.quantization.config == {"load_in_8bit": True}  # the default threshold: decomposition on
    assert nodecomp.speed.decode_tokens_per_s > 1.4 * int8.speed.decode_tokens_per_s


def test_int8_nodecomp_refused_for_prequantized_checkpoints():
    gptq = check_one("TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ", options=CheckOptions(offline=True, suggest=False)).spec
    with pytest.raises(UsageError, match="re-quantized"):
        _plan(gptq, "int8-nodecomp")
    with pytest.raises(UsageError, match="int8-nodecomp"):
        _plan(gptq, "int8-threshold0")  # unknown names list the known ones


def test_four_bit_fast_path_only_at_batch_one(spec):
    """bitsandbytes' fused gemv serves one token per call; at batch > 1 every weight is dequantized first."""
    per_seq = {b: _plan(spec, "nf4", batch=b).plan.speed.decode_tokens_per_s for b in (1, 2, 8)}
    bf16 = {b: _plan(spec, "bf16", batch=b).plan.speed.decode_tokens_per_s for b in (1, 2, 8)}
    assert per_seq[2] < 0.8 * per_seq[1]
    assert bf16[2] > 0.95 * bf16[1]  # eager bf16 on an H100 is host-bound: flat in batch
    assert per_seq[1] < bf16[1]  # measured: nf4 0.74x bf16 at batch 1 on an H100


def test_bandwidth_bound_gpu_gains_from_nf4(spec):
    l4 = {p: _plan(spec, p, gpu="L4").plan.speed.decode_tokens_per_s for p in ("bf16", "nf4")}
    assert l4["nf4"] > 1.5 * l4["bf16"]  # 300 GB/s: the weight bytes dominate the step


def test_cpu_offload_adds_transfer_time(spec):
    prof = profile_for_gpu("L4", 1, node_mem="256GB")
    wl = Workload(context_tokens=4096, prompt_tokens=4096, max_new_tokens=100)
    on_gpu = search(spec, prof, SearchOptions(workload=wl, precision="nf4")).plan
    offl = search(spec, prof, SearchOptions(workload=wl, precision="fp32", min_tokens_per_s=0.01)).plan
    assert on_gpu.status == "fits" and offl.status == "cpu-offload"
    assert offl.speed.decode_tokens_per_s < on_gpu.speed.decode_tokens_per_s / 5
    assert any("host link" in a for a in offl.speed.assumptions)


@pytest.mark.parametrize("storage", sorted(STORAGE_BYTES_PER_S))
def test_load_time_follows_the_storage_kind(spec, storage):
    base = profile_for_gpu("H100-80GB", 1)
    prof = dataclasses.replace(base, storage=storage, storage_bytes_per_s=STORAGE_BYTES_PER_S[storage])
    plan = _plan(spec, "bf16", profile=prof).plan
    assert plan.speed.load_seconds == pytest.approx(spec.checkpoint_bytes / STORAGE_BYTES_PER_S[storage], abs=0.1)
    note = [a for a in plan.speed.assumptions if a.startswith("load reads")]
    assert note and storage in note[0]
    assert ("default" in note[0]) == (storage == "network")
    assert plan.cluster.storage == storage


def test_every_plan_states_its_speed_assumptions(spec):
    plan = _plan(spec, "int8").plan
    text = " ".join(plan.speed.assumptions)
    for needle in ("per decoder layer", "us per int8 Linear call", "outlier decomposition", "HBM", "load reads",
                   "published transformers"):
        assert needle in text
    assert any("network file system" in a for a in profile_for_gpu("H100-80GB", 1).assumed)


def test_host_factor_applies_to_named_hosts_only(spec):
    """A custom GPU named like an evidence host (RTX-4090) takes that host's measured speed; others the default."""
    h100 = GPU_CATALOG["H100-80GB"]
    fast = dataclasses.replace(h100, name="RTX-4090", aliases=())
    part = Partition(name="p", gpu=fast, gpus_per_node=1, cpus_per_node=8, mem_bytes=256 * GB)
    prof = ClusterProfile(name="x", partitions=(part,), default_partition="p")
    assert _plan(spec, "bf16", profile=prof).plan.speed.decode_tokens_per_s > \
        1.5 * _plan(spec, "bf16").plan.speed.decode_tokens_per_s
