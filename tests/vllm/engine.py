"""The real vLLM engine in tests: the CPU build's venv, tiny random-weight models, and plans the planner makes for
them with the CPU build's pool (VLLM_CPU_KVCACHE_SPACE GiB per worker, block size 128).

The models are built here from the configs below with this venv's torch and transformers (bf16 safetensors, a
WordLevel tokenizer trained in-process with a chat template), so nothing is downloaded. The vLLM side runs in
its own venv (scripts/vllm-cpu-venv.sh, $VPLAN_VLLM_VENV or .venv-vllm): without it the live tests skip with the
reason, and fail under CI=true, where scripts/test.sh always builds it.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests import plans
from vplan.planner.memory import vllm as vm
from vplan.planner.plan.contract import ClusterShape, Requirement, Speed, VllmArgs, VllmRank, Workload

REPO = Path(__file__).resolve().parents[2]
KVCACHE_SPACE_GIB = 1  # VLLM_CPU_KVCACHE_SPACE: the pool of every CPU worker
MAX_MODEL_LEN = 512
COMMON = dict(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=2048,
              bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=False, rms_norm_eps=1e-5)
MODELS = {
    # 2 KV heads: TP 2 splits them (one per rank)
    "llama-kv2": ("llama", dict(COMMON, num_key_value_heads=2, head_dim=64, intermediate_size=512)),
    # 1 KV head: TP 2 replicates it (KV tokens do not grow with TP)
    "llama-kv1": ("llama", dict(COMMON, num_key_value_heads=1, head_dim=64, intermediate_size=512)),
    # a sliding window on every layer: blocks per request depend on max_num_batched_tokens
    "mistral-swa": ("mistral", dict(COMMON, num_key_value_heads=2, head_dim=64, intermediate_size=512, sliding_window=128)),
}
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def vllm_venv() -> Path:
    return Path(os.environ.get("VPLAN_VLLM_VENV") or REPO / ".venv-vllm")


def require_engine() -> Path:
    """The CPU build's venv, or a clean skip (a loud failure under CI=true) saying how to get it."""
    venv = vllm_venv()
    missing = [p for p in (venv / "bin" / "vllm", venv / "bin" / "vplan") if not p.exists()]
    if missing:
        reason = f"the vllm-cpu venv is missing ({', '.join(map(str, missing))}): run scripts/vllm-cpu-venv.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return venv


def build_model(folder: Path, name: str) -> Path:
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model_type, kw = MODELS[name]
    cfg = transformers.AutoConfig.for_model(model_type, **kw)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    vocab.update({f"w{i}": len(SPECIALS) + i for i in range(kw["vocab_size"] - len(SPECIALS))})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", model_max_length=kw["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return folder


def records(n: int = 6) -> list[dict]:
    """Prompts and chats of the tiny vocabulary; ids of both JSON types."""
    out = []
    for i in range(n):
        words = " ".join(f"w{(7 * i + k) % 900 + 10}" for k in range(3 + i % 4))
        out.append({"id": f"r{i}", "prompt": words} if i % 2 == 0 else
                   {"id": i, "messages": [{"role": "system", "content": "w1 w2"}, {"role": "user", "content": words}]})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def cpu_plan(folder: Path, *, tp: int, nodes: int = 1, port: int = 8000, max_new_tokens: int = 8, batch: int = 4,
             requests: int = 6, max_num_batched_tokens: int = 2048):
    """The plan for ``folder`` on the CPU build: every rank's weights and the KV pool from the planner's vLLM model
    (planner/memory/vllm.py), with the CPU build's pool; the GPUs of the plan stand for the CPU workers."""
    from vplan.planner.api import check_one

    spec = check_one(str(folder)).spec
    pool = vm.kv_pool(spec, tp=tp, pp=1, pool_bytes_per_rank=vm.cpu_pool_bytes(KVCACHE_SPACE_GIB),
                      block_size=vm.CPU_BLOCK_SIZE, max_model_len=MAX_MODEL_LEN, kv_dtype_bytes=2,
                      max_num_batched_tokens=max_num_batched_tokens, device="cpu")
    weights = vm.rank_weight_bytes(spec, tp=tp, pp=1, pp_rank=0, precision="bf16")
    per_node = tp // nodes
    ranks = tuple(VllmRank(node=r // per_node, gpu=r % per_node, tp_rank=r, pp_rank=0,
                           layers=tuple(range(spec.config["num_hidden_layers"])), weights_bytes=weights,
                           profile_peak_bytes=0, non_torch_bytes=0, cuda_graph_bytes=0,
                           kv_cache_bytes=vm.cpu_pool_bytes(KVCACHE_SPACE_GIB)) for r in range(tp))
    args = VllmArgs(version=vm.MODELLED_VERSION, tensor_parallel_size=tp, pipeline_parallel_size=1, quantization=None,
                    dtype="bfloat16", kv_cache_dtype="auto", max_model_len=MAX_MODEL_LEN, gpu_memory_utilization=0.9,
                    max_num_seqs=16, max_num_batched_tokens=max_num_batched_tokens, block_size=vm.CPU_BLOCK_SIZE,
                    enforce_eager=True, kv_cache_tokens=pool.tokens, max_concurrency=round(pool.max_concurrency, 2),
                    port=port, ranks=ranks)
    wl = Workload(context_tokens=MAX_MODEL_LEN, prompt_tokens=64, max_new_tokens=max_new_tokens, batch=batch, requests=requests)
    return plans.vllm_plan(
        args=args, model_id=str(folder), source="local", revision=None, architecture=spec.config["model_type"],
        nodes=nodes, host_ram_bytes=2 * plans.GIB, workload=wl, config=spec.config,
        requirements={"vllm": Requirement(vm.VERSION_SPEC, "the per-rank memory model was read from vLLM 0.32.0")},
        speed=Speed(decode_tokens_per_s=10.0, prefill_tokens_per_s=1000.0, load_seconds=60.0,
                    throughput_tokens_per_s=40.0, seconds_per_request=1.0, assumptions=("CPU build test plan",)),
        cluster=ClusterShape(profile="default", partition="gpu", gpu="A100-40GB", gpus_per_node=2, cpus_per_node=4,
                             mem_bytes=128 * 1000**3, nodes=8))


def engine_env(tmp: Path, *, tp_on_one_node: int = 1, extra: dict | None = None) -> dict:
    """The environment the CPU build needs: its KV pool, offline, caches in ``tmp``, the weight probe's file."""
    env = dict(os.environ, VLLM_TARGET_DEVICE="cpu", VLLM_CPU_KVCACHE_SPACE=str(KVCACHE_SPACE_GIB), HF_HUB_OFFLINE="1",
               HF_HOME=str(tmp / "hf"), VLLM_CACHE_ROOT=str(tmp / "vllm-cache"), VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
               VPLAN_WEIGHT_PROBE_OUT=str(tmp / "weights.jsonl"))
    if tp_on_one_node > 1:  # one core per worker (2-core machines: the default binding wants a spare core)
        env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(i) for i in range(tp_on_one_node))
    env.update(extra or {})
    return env


def loaded_weights(tmp: Path) -> list[dict]:
    """What the weight probe recorded, one dict per worker (tests/vllm/weight_probe.py)."""
    path = tmp / "weights.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def vplan(venv: Path, *args, env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """`vplan` of the vLLM venv (the engine side of a run)."""
    return subprocess.run([str(venv / "bin" / "vplan"), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout)
