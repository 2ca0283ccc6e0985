"""Multimodal configs planned from config.json alone, against transformers: parameters and bytes per block of the
class the runtime loads (meta device), block names, the tie from_pretrained makes, the KV cache of a real
generate() by layer type (sliding, Llama 4 chunked and NoPE layers), checkpoint names."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import transformers

from .conftest import cache_bytes, cpu_model, meta_model, spec_of
from vplan.planner.errors import UnsupportedModelError, UsageError
from vplan.planner.memory import kv, weights
from vplan.planner.model import build_spec
from vplan.planner.model.behaviours import behaviour
from vplan.planner.model.multimodal import loaded_tie, module_bytes_by_block
from vplan.planner.source.checkpoint import summarize_tensors

FIXTURES = Path(__file__).parent.parent / "fixtures" / "configs"
MULTIMODAL_FIXTURES = ("gemma3-default", "gemma-3-4b", "gemma-3-27b", "mistral3-default", "mistral-small-3.1",
                       "llama4-default", "llama4-maverick",
                       "qwen2_5_vl-default", "qwen2.5-vl-7b", "qwen3_vl-default")
PIXTRAL = {"model_type": "pixtral", "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 6,
           "num_attention_heads": 12, "head_dim": 64, "image_size": 1024, "patch_size": 16}
VARIANTS = {  # every switch the layouts depend on (dimensions as published or scaled down)
    "gemma3+head+bias+untied": {
        "model_type": "gemma3", "tie_word_embeddings": False,
        "text_config": {"model_type": "gemma3_text", "hidden_size": 1152, "intermediate_size": 6912,
                        "num_hidden_layers": 7, "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
                        "sliding_window": 512, "attention_bias": True, "vocab_size": 32000},
        "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 768, "intermediate_size": 3072,
                          "num_hidden_layers": 4, "num_attention_heads": 12, "image_size": 448, "patch_size": 14,
                          "vision_use_head": True}},
    "gemma3-no-subconfigs": {"model_type": "gemma3"},
    "mistral3+2layers+bias+sliding": {
        "model_type": "mistral3", "tie_word_embeddings": False, "multimodal_projector_bias": True,
        "vision_feature_layer": [-1, -4], "spatial_merge_size": 4,
        "text_config": {"model_type": "mistral", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 10,
                        "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 32768,
                        "sliding_window": 4096},
        "vision_config": PIXTRAL},
    "mistral3-no-subconfigs": {"model_type": "mistral3", "tie_word_embeddings": False},
    "llama4+interleaved+no-qk-norm": {
        "model_type": "llama4",
        "text_config": {"model_type": "llama4_text", "attention_chunk_size": 8192, "hidden_size": 1024,
                        "intermediate_size": 512, "intermediate_size_mlp": 2048, "num_attention_heads": 16,
                        "num_hidden_layers": 8, "num_key_value_heads": 4, "head_dim": 64, "num_local_experts": 8,
                        "interleave_moe_layer_step": 2, "use_qk_norm": False, "attention_bias": True,
                        "vocab_size": 4096, "tie_word_embeddings": True}},
    "llama4_text-alone": {"model_type": "llama4_text", "hidden_size": 1024, "intermediate_size": 512,
                          "intermediate_size_mlp": 2048, "num_attention_heads": 16, "num_hidden_layers": 8,
                          "num_key_value_heads": 4, "head_dim": 64, "num_local_experts": 4,
                          "interleave_moe_layer_step": 2, "vocab_size": 4096},
    "llama4-no-chunk": {"model_type": "llama4", "text_config": {"attention_chunk_size": None, "num_hidden_layers": 8,
                                                                "num_local_experts": 4, "vocab_size": 4096}},
    "qwen2.5-vl-3b-flat-tied": {
        "model_type": "qwen2_5_vl", "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
        "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                          "out_hidden_size": 2048, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}},
    "qwen2.5-vl-nested-text-tied": {
        "model_type": "qwen2_5_vl",
        "text_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 4, "num_attention_heads": 8,
                        "num_key_value_heads": 2, "vocab_size": 4096, "tie_word_embeddings": True},
        "vision_config": {"depth": 2, "hidden_size": 256, "intermediate_size": 512, "num_heads": 4,
                          "out_hidden_size": 1024}},
    "qwen3-vl-tied-only-in-text": {  # transformers reads the top-level flag: untied (lm_head initialised)
        "model_type": "qwen3_vl",
        "text_config": {"model_type": "qwen3_vl_text", "hidden_size": 2560, "intermediate_size": 9728,
                        "num_hidden_layers": 6, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                        "vocab_size": 151936, "tie_word_embeddings": True, "attention_bias": True},
        "vision_config": {"depth": 4, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
                          "num_position_embeddings": 2304, "deepstack_visual_indexes": [1, 3], "out_hidden_size": 2560}},
}


def fixture(name: str) -> dict:
    return {k: v for k, v in json.loads((FIXTURES / f"{name}.json").read_text()).items() if k != "_comment"}


CASES = [(n, lambda n=n: fixture(n)) for n in MULTIMODAL_FIXTURES] + [(n, lambda n=n: VARIANTS[n]) for n in VARIANTS]


def _by_block(model, names: list[str]) -> tuple[dict, dict]:
    """(params, bytes) per block, each tensor in the block whose name is its longest prefix (tied tensors once)."""
    params: dict[str, int] = {}
    nbytes: dict[str, int] = {}
    for kind, items in (("p", model.named_parameters()), ("b", model.named_buffers())):
        for name, t in items:
            owners = [n for n in names if name.startswith(n + ".")]
            assert len(owners) == 1, (name, owners)
            if kind == "p":
                params[owners[0]] = params.get(owners[0], 0) + t.numel()
            nbytes[owners[0]] = nbytes.get(owners[0], 0) + t.numel() * t.element_size()
    return params, nbytes


@pytest.mark.parametrize("name,cfgf", CASES, ids=[c[0] for c in CASES])
def test_blocks_params_and_bytes_equal_the_loaded_class_on_meta(name, cfgf):
    cfg = cfgf()
    if name == "llama4-no-chunk" and not behaviour("llama4_chunked_needs_chunk_size", transformers.__version__):
        with pytest.raises(UsageError, match="generate\\(\\) fails"):  # 5.23: chunked layers without a chunk size
            spec_of(name, cfg)
        return
    spec = spec_of(name, cfg)
    model = meta_model(cfg)
    names = [b.name for b in spec.blocks]
    assert len(names) == len(set(names))
    modules = dict(model.named_modules())
    assert all(n in modules for n in names), [n for n in names if n not in modules]
    params, nbytes = _by_block(model, names)
    assert spec.params_total == sum(p.numel() for p in model.parameters())
    assert {b.name: b.params_total for b in spec.blocks if b.params_total} == params
    assert {n: v for n, v in weights.weight_bytes_by_block(spec, "bf16").items() if v} == nbytes
    lin = [m for n, m in model.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"]
    assert sorted(tuple(m.weight.shape) for m in lin) == sorted(s for b in spec.blocks for s in b.linear_shapes)
    assert sum(m.bias.numel() for m in lin if m.bias is not None) == \
        sum(b.params.get("linear_bias", 0) for b in spec.blocks)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert spec.tie_word_embeddings == tied
    # the text model sits where the spec says; the vision blocks are never run by text-only generate()
    assert spec.embed_block in modules and spec.layer_block(spec.num_layers - 1) in modules
    assert spec.params_active == spec.params_total - sum(b.params_total for b in spec.blocks if not b.runs_in_generate)


@pytest.mark.parametrize("name", ["gemma-3-4b", "mistral-small-3.1", "qwen2.5-vl-7b"])
def test_fp16_and_fp32_bytes_equal_meta(name):
    cfg = fixture(name)
    spec = spec_of(name, cfg)
    for dtype, prec in ((torch.float16, "fp16"), (torch.float32, "fp32")):
        model = meta_model(cfg, dtype=dtype)
        truth = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        assert weights.weight_bytes(spec, prec) == truth


def test_published_sizes():
    """research reference: gemma-3-4b 4.300B, Mistral Small 3.1 24.01B loaded (the lm_head it stores), Llama 4 Scout
    107.77B as AutoModelForCausalLM loads it (text model only), Qwen2.5-VL-7B 8.292B."""
    got = {n: round(spec_of(n, fixture(n)).params_total / 1e9, 3)
           for n in ("gemma-3-4b", "mistral-small-3.1", "llama4-default", "qwen2.5-vl-7b")}
    assert got == {"gemma-3-4b": 4.3, "mistral-small-3.1": 24.011, "llama4-default": 107.77, "qwen2.5-vl-7b": 8.292}
    # the config transformers saves states the tie: tied, as from_config builds it
    assert spec_of("m", fixture("mistral3-default")).tie_word_embeddings


def test_the_tie_follows_from_pretrained():
    mistral = fixture("mistral-small-3.1")  # no top-level key: the class default says tie
    assert "tie_word_embeddings" not in mistral
    assert loaded_tie(mistral, None, "5.24")[0] is False  # checkpoints store lm_head.weight
    assert loaded_tie(mistral, False, "5.24")[0] is True  # a checkpoint without it: tied
    assert loaded_tie(mistral, True, "5.24")[0] is False
    gemma = fixture("gemma-3-4b")
    assert loaded_tie(gemma, None, "5.24")[0] is True and loaded_tie(gemma, True, "5.24")[0] is False
    assert loaded_tie(VARIANTS["qwen3-vl-tied-only-in-text"], None, "5.24")[0] is False
    assert loaded_tie(VARIANTS["qwen2.5-vl-nested-text-tied"], None, "5.24")[0] is True
    spec = spec_of("m", mistral)
    assert not spec.tie_word_embeddings and any("lm_head counted untied" in w for w in spec.warnings)
    assert any("planned for text prompts" in w for w in spec.warnings)


def test_checkpoint_names_map_onto_the_loaded_blocks():
    ck = summarize_tensors([
        ("language_model.model.embed_tokens.weight", "BF16", [100, 8]),
        ("language_model.model.layers.0.mlp.down_proj.weight", "BF16", [8, 8]),
        ("language_model.lm_head.weight", "BF16", [100, 8]),
        ("vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight", "BF16", [8, 8]),
        ("multi_modal_projector.mm_input_projection_weight", "BF16", [8, 8]),
    ])
    assert module_bytes_by_block("gemma3", ck) == {
        "model.language_model.embed_tokens": 1600, "model.language_model.layers.0": 128, "lm_head": 1600,
        "model.vision_tower": 128, "model.multi_modal_projector": 128}
    # Llama 4 under AutoModelForCausalLM: the text model only (vision weights are unexpected keys, dropped)
    ck4 = summarize_tensors([("language_model.model.layers.0.feed_forward.router.weight", "BF16", [4, 8]),
                             ("vision_model.patch_embedding.linear.weight", "BF16", [8, 8])])
    assert module_bytes_by_block("llama4", ck4) == {"model.layers.0": 64}
    qwen = summarize_tensors([("model.layers.1.self_attn.q_proj.weight", "BF16", [8, 8]),
                              ("visual.blocks.0.attn.qkv.weight", "BF16", [24, 8])])
    assert module_bytes_by_block("qwen2_5_vl", qwen) == {"model.language_model.layers.1": 128, "model.visual": 384}
    # a stored lm_head unties even where the config says tie
    assert not spec_of("g", fixture("gemma-3-4b"), ck).tie_word_embeddings


def test_unmodelled_families_and_text_models_are_refused():
    with pytest.raises(UnsupportedModelError, match="cannot be derived"):
        spec_of("p", {"model_type": "paligemma"})
    with pytest.raises(UnsupportedModelError, match="text_config of model_type 'llama'"):
        spec_of("m", {"model_type": "mistral3", "text_config": {"model_type": "llama", "hidden_size": 64}})


def test_llama4_without_chunk_size_is_full_attention_on_5_24_and_refused_on_5_23():
    cfg = VARIANTS["llama4-no-chunk"]
    assert {a.kind for a in build_spec("l", None, "config", cfg, None, transformers="5.24").attention} == {"full"}
    with pytest.raises(UsageError, match="--transformers 5.24"):
        build_spec("l", None, "config", cfg, None, transformers="5.23")


def _small(cfg: dict, text: dict, vision: dict | None = None) -> dict:
    c = copy.deepcopy(cfg)
    if "text_config" in c or c["model_type"] != "qwen2_5_vl":
        c["text_config"] = {**c.get("text_config", {}), **text}
    else:
        c.update(text)
    if vision is not None:
        c["vision_config"] = {**c.get("vision_config", {}), **vision}
    return c


KV_CASES = [  # real head shapes, few layers, small hidden/vocab/MLP; windows small enough to be crossed
    ("gemma3-sliding", lambda: _small(fixture("gemma-3-4b"), {
        "hidden_size": 256, "intermediate_size": 64, "num_hidden_layers": 6, "vocab_size": 512, "sliding_window": 16,
        "layer_types": None, "sliding_window_pattern": 3}, {"num_hidden_layers": 1, "image_size": 28}), 40),
    ("llama4-chunked-nope", lambda: _small(fixture("llama4-default"), {
        "hidden_size": 256, "intermediate_size": 32, "intermediate_size_mlp": 64, "num_hidden_layers": 4,
        "vocab_size": 512, "num_local_experts": 2, "attention_chunk_size": 16, "layer_types": None,
        "no_rope_layers": None, "moe_layers": None}), 40),
    ("qwen2.5-vl-full", lambda: _small(fixture("qwen2.5-vl-7b"), {
        "hidden_size": 3584, "intermediate_size": 64, "num_hidden_layers": 2, "vocab_size": 512},
        {"depth": 1, "hidden_size": 64, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 3584}), 40),
    ("mistral3-full", lambda: _small(fixture("mistral3-default"), {
        "hidden_size": 256, "intermediate_size": 64, "num_hidden_layers": 2, "vocab_size": 512},
        {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 64, "num_attention_heads": 2,
         "image_size": 28}), 40),
]


@pytest.mark.parametrize("name,cfgf,tokens", KV_CASES, ids=[c[0] for c in KV_CASES])
def test_kv_cache_of_generate_equals_planned_by_layer_type(name, cfgf, tokens):
    cfg = cfgf()
    spec = spec_of(name, cfg)
    model = cpu_model(cfg)
    ids = torch.zeros((2, tokens), dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        held, _ = cache_bytes(out.past_key_values)
        assert kv.kv_cache_bytes(spec, tokens, 2, 2) == held  # right after prefill: the prompt in every layer
        cache = out.past_key_values
        for _ in range(4):
            cache = model(input_ids=torch.zeros((2, 1), dtype=torch.long), past_key_values=cache,
                          use_cache=True).past_key_values
        held2, _ = cache_bytes(cache)
    assert kv.kv_cache_bytes(spec, tokens + 4, 2, 2, prompt_tokens=1) == held2
    if name.startswith("llama4"):  # rope layers chunked (window = chunk), every 4th (NoPE) full
        assert [a.kind for a in spec.attention] == ["chunked", "chunked", "chunked", "full"]
        assert {a.sliding_window for a in spec.attention if a.kind == "chunked"} == {16}


@pytest.mark.parametrize("name", ["gemma-3-4b", "mistral-small-3.1", "llama4-default", "qwen2.5-vl-7b"])
def test_bnb_int8_and_nf4_equal_the_quantizer_on_the_loaded_class(name):
    """bitsandbytes converts every nn.Linear of the loaded class, vision tower and projector included (only tied
    weights, the last module and lm_head are spared), never Llama 4's fused experts or its nn.Linear-subclass router."""
    from transformers import BitsAndBytesConfig

    from .test_quant import _quantizer_bytes

    cfg = fixture(name)
    spec = spec_of(name, cfg)
    t8, lin8 = _quantizer_bytes(cfg, BitsAndBytesConfig(load_in_8bit=True))
    assert weights.weight_bytes(spec, "int8") == t8 + sum(4 * m.out_features for m in lin8)
    t4, lin4 = _quantizer_bytes(cfg, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"))
    assert weights.weight_bytes(spec, "nf4") == t4 + sum(4 * -(-m.in_features * m.out_features // 64) + 64 for m in lin4)
    assert sorted((m.out_features, m.in_features) for m in lin8) == sorted(s for b in spec.blocks for s in b.linear_shapes)


@pytest.mark.parametrize("name", ["gemma-3-4b", "llama4-default"])
def test_fp8_equals_the_quantizer_on_the_loaded_class(name):
    """Fine-grained FP8: every nn.Linear and Llama 4's experts (re-created as FP8Experts) with fp32 block scales."""
    from transformers import FineGrainedFP8Config

    from .test_quant import _quantized_meta

    cfg = fixture(name)
    spec = spec_of(name, cfg)
    model, _ = _quantized_meta(cfg, FineGrainedFP8Config(weight_block_size=[128, 128]), pre_quantized=True)
    _, nbytes = _by_block(model, [b.name for b in spec.blocks])
    assert {n: v for n, v in weights.weight_bytes_by_block(spec, "fp8").items() if v} == nbytes
