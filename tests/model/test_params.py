"""Parameter counts, per-block counts and bf16/fp16/fp32 bytes against transformers' meta-device models."""
import pytest
import torch

from .conftest import CATALOG_IDS, catalog_config, default_config, meta_bytes_by_block, meta_model, spec_of
from vplan.planner.memory import weights as memory
from vplan.planner.source.checkpoint import block_of
from vplan.planner.errors import UnsupportedModelError, VplanError

# Families by transformers' defaults plus the switches the parameter layout depends on.
VARIANTS = {
    "llama": {}, "llama+bias+head_dim": {"attention_bias": True, "mlp_bias": True, "head_dim": 96},
    "mistral": {}, "mistral+head_dim": {"head_dim": 64},
    "mixtral": {}, "qwen2": {}, "qwen2+tied": {"tie_word_embeddings": True},
    "qwen3": {}, "qwen3+bias": {"attention_bias": True},
    "qwen3_moe": {}, "qwen3_moe+mlp_only+step2": {"mlp_only_layers": [0, 5], "decoder_sparse_step": 2},
    # DeepseekV2Config() leaves num_experts_per_tok None (its MoE forward needs it): the published 6
    "deepseek_v2": {"num_experts_per_tok": 6},
    "deepseek_v2+q_lora+bias": {"q_lora_rank": 1536, "attention_bias": True, "mlp_bias": True, "first_k_dense_replace": 2,
                                "n_shared_experts": 2, "num_experts_per_tok": 6},
    "deepseek_v3": {}, "deepseek_v3+no_q_lora": {"q_lora_rank": None, "first_k_dense_replace": 1},
    "gpt_oss": {}, "phi3": {}, "phi3+gqa": {"num_key_value_heads": 8},
    "gemma2": {}, "gemma2+bias": {"attention_bias": True}, "gemma3_text": {},
}


def _variant_cfg(key):
    return default_config(key.split("+")[0], **VARIANTS[key])


CASES = [("catalog", m) for m in CATALOG_IDS] + [("variant", k) for k in VARIANTS]


@pytest.mark.parametrize("kind,key", CASES, ids=[k for _, k in CASES])
def test_blocks_params_and_bytes_equal_meta_model(kind, key):
    cfg = catalog_config(key) if kind == "catalog" else _variant_cfg(key)
    spec = spec_of(key, cfg)
    model = meta_model(cfg)
    params, nbytes = meta_bytes_by_block(model)
    assert spec.params_total == sum(p.numel() for p in model.parameters())
    assert {b.name: b.params_total for b in spec.blocks if b.params_total} == params
    assert {n: v for n, v in memory.weight_bytes_by_block(spec, "bf16").items() if v} == nbytes
    # block names: unique, every parameter/buffer inside exactly one, all are real module names
    names = [b.name for b in spec.blocks]
    assert len(names) == len(set(names))
    modules = dict(model.named_modules())
    assert all(n in modules for n in names), [n for n in names if n not in modules]
    for name, _ in list(model.named_parameters()) + list(model.named_buffers()):
        assert sum(name.startswith(n + ".") for n in names) == 1, name
    # linear class == exactly the nn.Linear weights (what bitsandbytes may convert) minus lm_head
    lin = [m for n, m in model.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"]
    assert sum(m.weight.numel() for m in lin) == sum(b.params.get("linear", 0) for b in spec.blocks)
    assert sum(m.bias.numel() for m in lin if m.bias is not None) == sum(b.params.get("linear_bias", 0) for b in spec.blocks)
    assert sorted(tuple(m.weight.shape) for m in lin) == sorted(s for b in spec.blocks for s in b.linear_shapes)


@pytest.mark.parametrize("mid", ["openai/gpt-oss-20b", "meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen3-30B-A3B"])
def test_fp16_and_fp32_bytes_follow_keep_in_fp32_modules(mid):
    """fp16: transformers keeps _keep_in_fp32_modules (gpt-oss norms) in fp32 (modeling_utils._get_dtype_plan)."""
    cfg = catalog_config(mid)
    spec = spec_of(mid, cfg)
    model = meta_model(cfg, dtype=torch.float16)
    keep = tuple(model._keep_in_fp32_modules or ())
    truth = sum(p.numel() * (4 if any(k in n for k in keep) else 2) for n, p in model.named_parameters())
    truth += sum(b.numel() * b.element_size() for b in model.buffers())
    assert memory.weight_bytes(spec, "fp16") == truth
    f32 = meta_model(cfg, dtype=torch.float32)
    assert memory.weight_bytes(spec, "fp32") == sum(t.numel() * t.element_size()
                                                    for t in list(f32.parameters()) + list(f32.buffers()))


def test_params_active_counts_top_k_of_routed_experts():
    spec = spec_of("mistralai/Mixtral-8x7B-v0.1", catalog_config("mistralai/Mixtral-8x7B-v0.1"))
    routed = sum(b.params.get("experts", 0) for b in spec.blocks)
    assert spec.params_active == spec.params_total - routed + routed * 2 // 8
    assert spec.moe.expert_params_per_layer * spec.moe.moe_layers == routed
    assert round(spec.params_active / 1e9, 1) == 12.9  # Mistral's published "12.9B active"
    dense = spec_of("meta-llama/Llama-3.1-8B", catalog_config("meta-llama/Llama-3.1-8B"))
    assert dense.params_active == dense.params_total and dense.moe is None


def test_hub_raw_and_transformers_saved_names_agree():
    """Hub configs say num_experts; transformers 5 saves num_local_experts (attribute_map)."""
    raw = catalog_config("Qwen/Qwen3-30B-A3B")
    import transformers

    saved = transformers.AutoConfig.for_model(**raw).to_dict()
    assert "num_experts" not in saved and saved["num_local_experts"] == raw["num_experts"]
    assert spec_of("a", raw).params_total == spec_of("b", saved).params_total


def test_deepseek_v25_meta_build_is_fast_and_exact():
    import time

    cfg = catalog_config("deepseek-ai/DeepSeek-V2.5")
    t = time.time()
    model = meta_model(cfg)
    assert time.time() - t < 5
    assert spec_of("d", cfg).params_total == sum(p.numel() for p in model.parameters()) == 235_741_434_880


def test_an_architecture_vplan_cannot_derive_is_refused_never_planned():
    """No fallback that would size weights and call a model "fits" without its KV cache and activations."""
    from vplan.planner.source.checkpoint import summarize_tensors

    ck = summarize_tensors([("model.embed_tokens.weight", "BF16", [100, 64]), ("model.layers.0.mixer.w", "BF16", [64, 64])])
    for checkpoint in (ck, None):
        with pytest.raises(UnsupportedModelError) as e:
            spec_of("x/y", {"model_type": "mamba9", "hidden_size": 64, "num_hidden_layers": 2}, checkpoint)
        assert isinstance(e.value, VplanError) and "mamba9" in e.value.message
        assert "cannot be derived" in e.value.message and "gemma3" in e.value.message
    assert block_of("model.layers.1.mixer.w") == "model.layers.1"


def test_moe_without_top_k_takes_the_class_default_or_is_refused():
    from vplan.planner.errors import MalformedConfigError

    cfg = {k: v for k, v in catalog_config("Qwen/Qwen3-30B-A3B").items() if k != "num_experts_per_tok"}
    assert spec_of("q", cfg).moe.top_k == 8  # Qwen3MoeConfig's default
    with pytest.raises(MalformedConfigError, match="num_experts_per_tok"):
        spec_of("d", {k: v for k, v in catalog_config("deepseek-ai/DeepSeek-V2-Lite").items() if k != "num_experts_per_tok"})
