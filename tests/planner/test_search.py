"""The search on real catalog models: the problem statement's table, and invariants as properties."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vplan.planner.api import CheckOptions, check_one
from vplan.planner.hardware.cluster import default_profile, profile_for_gpu
from vplan.planner.plan.contract import Quantization, Rejection, Workload
from vplan.planner.search.core import SearchOptions, search

SIX = {
    "gpt": "openai/gpt-oss-20b", "dsv25": "deepseek-ai/DeepSeek-V2.5", "llama70": "meta-llama/Llama-3.3-70B-Instruct",
    "qwen72": "Qwen/Qwen2.5-72B-Instruct", "qwen32": "Qwen/Qwen3-32B", "ds7": "deepseek-ai/deepseek-llm-7b-chat",
}


@pytest.fixture(scope="module")
def specs():
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    return {k: check_one(mid, options=CheckOptions(offline=True, suggest=False)).spec for k, mid in SIX.items()}


def _check(spec, profile=None, **kw):
    wl = kw.pop("workload", Workload())
    return search(spec, profile or default_profile(), SearchOptions(workload=wl, **kw))


def test_7b_fits_one_gpu_bf16(specs):
    p = _check(specs["ds7"]).plan
    assert (p.status, p.gpus, p.precision) == ("fits", 1, "bf16")


def test_qwen3_32b_fits_two_gpus_bf16(specs):
    p = _check(specs["qwen32"]).plan
    assert (p.status, p.gpus, p.precision) == ("fits", 2, "bf16")
    assert set(p.device_map.values()) == {"0", "1"}


@pytest.mark.parametrize("key", ["llama70", "qwen72"])
def test_70b_class_only_quantized(specs, key):
    res = _check(specs[key])
    assert res.plan.status == "fits" and res.plan.precision in ("int8", "nf4") and res.plan.gpus == 2
    bf16 = [a for a in res.alternatives if a.precision == "bf16"]
    assert bf16 and all(a.status != "fits" for a in bf16)


def test_gpt_oss_plans_the_bf16_fallback_unless_the_kernels_are_known(specs):
    res = _check(specs["gpt"])
    p = res.plan
    assert (p.precision, p.status, p.gpus) == ("bf16", "fits", 2)
    assert p.quantization == Quantization("mxfp4", {"dequantize": True})
    mx = [a for a in res.alternatives if a.precision == "mxfp4" and a.status == "fits"]
    assert mx and mx[0].gpus == 1 and any("--mxfp4-kernels" in c for c in mx[0].conditions)
    known = _check(specs["gpt"], mxfp4_kernels=True).plan
    assert (known.precision, known.gpus) == ("mxfp4", 1) and any("kernels" in c for c in known.conditions)
    assert known.quantization == Quantization("mxfp4", {"dequantize": False})


def test_deepseek_v25_not_useful_on_default_node_and_suggests_hardware():
    res = check_one("deepseek-ai/DeepSeek-V2.5", default_profile(), CheckOptions(offline=True))
    assert res.plan.status == "does-not-fit" and res.plan.rejection == Rejection.TOO_SLOW
    assert res.plan.reason
    assert res.suggestions and all(" x " in s for s in res.suggestions)


def test_host_ram_respected_by_offload(specs):
    prof = default_profile()
    res = _check(specs["llama70"], precision="bf16")
    for p in [res.plan, *res.alternatives]:
        if p.status in ("cpu-offload", "disk-offload"):
            assert p.host_ram_bytes <= prof.partition().mem_bytes * 0.85


@settings(max_examples=25, deadline=None)
@given(ctx=st.integers(256, 65536), extra=st.integers(1, 65536), batch=st.integers(1, 8))
def test_memory_grows_with_context_and_batch(specs, ctx, extra, batch):
    spec = specs["qwen32"]
    prof = profile_for_gpu("H200", 8)
    a = _check(spec, prof, workload=Workload(context_tokens=ctx, prompt_tokens=ctx, batch=batch), precision="bf16", no_offload=True)
    b = _check(spec, prof, workload=Workload(context_tokens=ctx + extra, prompt_tokens=ctx + extra, batch=batch),
               precision="bf16", no_offload=True)
    c = _check(spec, prof, workload=Workload(context_tokens=ctx, prompt_tokens=ctx, batch=batch + 1), precision="bf16", no_offload=True)
    assert b.plan.kv_cache_bytes > a.plan.kv_cache_bytes
    assert c.plan.kv_cache_bytes > a.plan.kv_cache_bytes
    tot = lambda r: sum(d.total_bytes for d in r.plan.gpu_devices)  # noqa: E731
    if a.plan.gpus == b.plan.gpus:
        assert tot(b) >= tot(a)


@pytest.mark.parametrize("key", list(SIX))
def test_precision_order_of_weight_bytes(specs, key):
    from vplan.planner.memory import weights as memory

    spec = specs[key]
    if spec.checkpoint_quant:
        pytest.skip("pre-quantized checkpoint")
    sizes = [sum(memory.weight_bytes_by_block(spec, p).values()) for p in ("bf16", "int8", "nf4")]
    assert sizes[0] > sizes[1] > sizes[2]


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 7), key=st.sampled_from(list(SIX)), gpu=st.sampled_from(["A100-40GB", "H100-80GB", "L40S"]))
def test_more_gpus_never_unfit(specs, n, key, gpu):
    a = _check(specs[key], profile_for_gpu(gpu, n), no_offload=True)
    if a.plan.status == "fits":
        b = _check(specs[key], profile_for_gpu(gpu, n + 1), no_offload=True)
        assert b.plan.status == "fits"


def test_fp32_plans_hold_the_kv_cache_in_fp32(specs):
    prof = profile_for_gpu("H200", 8)
    bf16 = _check(specs["ds7"], prof, precision="bf16").plan
    fp32 = _check(specs["ds7"], prof, precision="fp32").plan
    assert fp32.kv_bytes_per_token == 2 * bf16.kv_bytes_per_token
    assert fp32.kv_cache_bytes == 2 * bf16.kv_cache_bytes
