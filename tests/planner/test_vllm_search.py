"""The vLLM search on the catalog's models and the default nodes (2 x A100-40GB, 8 nodes): the issue's bar, the
precision policy, rejections, and invariants of the per-rank memory model."""
import pytest

from vplan.planner.api import CheckOptions, check_engines
from vplan.planner.hardware.cluster import default_profile, profile_for_gpu
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.memory import vllm as vm
from vplan.planner.plan.contract import Rejection, Workload
from vplan.planner.search import precision as policy
from vplan.planner.search.core import SearchOptions
from vplan.planner.search.vllm import search_vllm

JOB = Workload(context_tokens=4096, prompt_tokens=3000, max_new_tokens=500, requests=5000)


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    import os

    os.environ["HF_HUB_OFFLINE"] = "1"
    ids = ["deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct", "openai/gpt-oss-20b", "Qwen/Qwen3-32B",
           "deepseek-ai/deepseek-llm-7b-chat", "TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ"]
    return {m: check_engines(m, options=CheckOptions(offline=True, suggest=False))[0].spec for m in ids}


def _vllm(spec, profile=None, **kw):
    return search_vllm(spec, profile or default_profile(), SearchOptions(engine="vllm", **kw))


def test_deepseek_v25_gets_a_multi_node_plan_that_fits_every_gpu(specs):
    p = _vllm(specs["deepseek-ai/DeepSeek-V2.5"]).plan
    v = p.vllm
    assert (p.engine, p.status, p.rejection) == ("vllm", "fits", None)
    assert 1 < p.nodes <= default_profile().partition().nodes
    assert v.tensor_parallel_size * v.pipeline_parallel_size == p.nodes * p.gpus == len(p.gpu_devices) == len(v.ranks)
    a100 = GPU_CATALOG["A100-40GB"].memory_bytes
    assert all(d.capacity_bytes == a100 and 0 < d.total_bytes <= a100 for d in p.gpu_devices)
    assert {d.node for d in p.gpu_devices} == set(range(p.nodes))
    assert sorted(i for s in range(v.pipeline_parallel_size) for i in next(r.layers for r in v.ranks if r.pp_rank == s)) \
        == list(range(60))
    assert v.kv_cache_tokens > 0 and v.max_concurrency >= 1


def test_llama_70b_gets_one_node_tensor_parallel_faster_than_transformers(specs):
    spec = specs["meta-llama/Llama-3.3-70B-Instruct"]
    opts = CheckOptions(offline=True, suggest=False, search=SearchOptions(workload=JOB, engine="all"))
    tf, vl = (r.plan for r in check_engines(spec.model_id, options=opts))
    assert (vl.status, vl.nodes, vl.gpus, vl.vllm.tensor_parallel_size, vl.vllm.pipeline_parallel_size) == \
        ("fits", 1, 2, 2, 1)
    assert tf.status == "fits" and tf.engine == "transformers"
    assert vl.speed.job_seconds(JOB.requests) < tf.speed.job_seconds(JOB.requests)
    assert vl.speed.decode_tokens_per_s > tf.speed.decode_tokens_per_s


def test_precision_policy_for_vllm(specs):
    a100, v100, h100 = GPU_CATALOG["A100-40GB"], GPU_CATALOG["V100-32GB"], GPU_CATALOG["H100-80GB"]
    llama = specs["meta-llama/Llama-3.3-70B-Instruct"]
    ok = {c.precision for c in policy.vllm_choices(llama, a100) if c.ok}
    assert ok == {"bf16", "fp8", "mxfp4"}
    refused = {c.precision: c.why_not for c in policy.vllm_choices(llama, a100) if not c.ok}
    assert "bitsandbytes" in refused["int8"] and "bitsandbytes" in refused["nf4"]
    assert policy.vllm_marlin("fp8", a100) and not policy.vllm_marlin("fp8", h100)
    assert policy.vllm_quantization(llama, "fp8") == "fp8_per_tensor"
    gpt = specs["openai/gpt-oss-20b"]
    assert [c.precision for c in policy.vllm_choices(gpt, a100) if c.ok] == ["mxfp4"]
    assert not any(c.ok for c in policy.vllm_choices(gpt, v100))  # Mxfp4Config needs compute capability 8.0
    assert policy.vllm_quantization(gpt, "mxfp4") == "mxfp4"
    gptq = specs["TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ"]
    assert [c.precision for c in policy.vllm_choices(gptq, a100) if c.ok] == ["gptq-int4"]


def test_rejections_say_why(specs):
    ds = specs["deepseek-ai/DeepSeek-V2.5"]
    one_node = profile_for_gpu("A100-40GB", 2, node_mem="128GB", cpus_per_node=4, nodes=1)
    p = _vllm(ds, one_node).plan
    assert (p.status, p.rejection) == ("does-not-fit", Rejection.NODES) and "needs" in p.reason
    p = _vllm(specs["deepseek-ai/deepseek-llm-7b-chat"], workload=Workload(context_tokens=8192)).plan
    assert p.rejection == Rejection.CONTEXT and "max_position_embeddings" in p.reason
    p = _vllm(specs["Qwen/Qwen3-32B"], profile_for_gpu(None, 0, node_mem="64GB", cpus_per_node=8)).plan
    assert p.rejection == Rejection.ENGINE
    big = _vllm(specs["Qwen/Qwen3-32B"], workload=Workload(context_tokens=4096, batch=200)).plan
    assert big.status == "fits" and big.vllm.max_concurrency >= 200 or big.rejection in (Rejection.NODES,
                                                                                         Rejection.CONTEXT)


def test_tensor_parallel_ranks_add_up_to_the_model_plus_replicas(specs):
    """Summed over TP ranks, the weights are the unsharded model plus what every rank repeats (norms, rotary cache)."""
    spec = specs["meta-llama/Llama-3.3-70B-Instruct"]
    one = vm.rank_weight_breakdown(spec, tp=1, pp=1, pp_rank=0, precision="bf16")
    assert sum(one.values()) - one["rotary_cache"] == 2 * spec.params_total  # the meta-model-checked count, in bf16
    for tp in (2, 4, 8):
        parts = [vm.rank_weight_breakdown(spec, tp=tp, pp=1, pp_rank=0, precision="bf16", tp_rank=r) for r in range(tp)]
        replicated = one["norms"] + one["norm"] + one["rotary_cache"]
        assert sum(sum(p.values()) for p in parts) == sum(one.values()) + (tp - 1) * replicated


def test_pipeline_stages_split_layers_like_vllm(specs):
    spec = specs["deepseek-ai/DeepSeek-V2.5"]
    stages = [vm.stage_layers(spec, pp=p, pp_rank=s) for p in (4, 7) for s in range(p)]
    assert [len(r) for r in stages[:4]] == [15, 15, 15, 15]
    assert [len(r) for r in stages[4:]] == [8, 8, 9, 9, 9, 9, 8]  # remainder to stages -2, -3, ... never the last
    whole = sum(vm.rank_weight_bytes(spec, tp=2, pp=4, pp_rank=s, precision="bf16") for s in range(4))
    assert whole > vm.rank_weight_bytes(spec, tp=2, pp=1, pp_rank=0, precision="bf16")  # each stage its own rotary cache


def test_mla_kv_is_one_latent_on_every_tp_rank(specs):
    spec = specs["deepseek-ai/DeepSeek-V2.5"]
    assert vm.kv_page_bytes(spec, tp=1, block_size=16, kv_dtype_bytes=2) == \
        vm.kv_page_bytes(spec, tp=8, block_size=16, kv_dtype_bytes=2) == 16 * (512 + 64) * 2


def test_more_gpus_never_lose_kv(specs):
    spec = specs["Qwen/Qwen3-32B"]
    prof = profile_for_gpu("H100-80GB", 8, node_mem="1000GB", cpus_per_node=64, nodes=1)
    tokens = [p.vllm.kv_cache_tokens for p in
              (_vllm(spec, prof, max_gpus=n).plan for n in (1, 2, 4, 8)) if p.fits]
    assert tokens and tokens == sorted(tokens)


def test_each_rank_stays_in_its_budget_and_the_tightest_fills_it(specs):
    """Every rank: weights + profiling peak + non-torch + graphs + KV <= ceil(total x 0.92) + context/NCCL outside it;
    the rank that sets num_blocks (the minimum over ranks) is left less than one block."""
    from vplan.planner.memory import vllm_gpu as vg

    for model in ("deepseek-ai/DeepSeek-V2.5", "Qwen/Qwen3-32B", "openai/gpt-oss-20b"):
        p = _vllm(specs[model]).plan
        v = p.vllm
        budget = vg.requested_bytes(GPU_CATALOG["A100-40GB"], v.gpu_memory_utilization) + \
            vg.outside_budget_bytes(p.nodes * p.gpus)
        blocks = [vm.kv_bytes_per_block(specs[model], tp=v.tensor_parallel_size, pp=v.pipeline_parallel_size,
                                        pp_rank=r.pp_rank, block_size=v.block_size, kv_dtype_bytes=2) for r in v.ranks]
        assert all(d.total_bytes <= budget <= d.capacity_bytes for d in p.gpu_devices)
        assert any(budget - d.total_bytes < b for d, b in zip(p.gpu_devices, blocks))
