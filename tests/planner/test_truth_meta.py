"""The memory model against independent truth: transformers' own models.

- parameter counts, per-block counts and bf16 bytes equal the model built on the meta device, for
  every catalog config;
- bitsandbytes converts exactly the modules the model says (its quantizer run on the meta model);
- KV bytes equal the bytes of a real transformers cache after a forward on CPU, for each layer kind
  (GQA, MHA, sliding window, MLA), with real head shapes and fewer layers.
"""
import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from vplan.planner import memory  # noqa: E402
from vplan.planner.catalog import list_ids, load  # noqa: E402
from vplan.planner.checkpoint import block_of  # noqa: E402
from vplan.planner.model import build_spec  # noqa: E402

IDS = list_ids()


def _meta_model(cfg: dict, dtype=torch.bfloat16):
    cfg = {k: v for k, v in cfg.items() if k != "quantization_config"}
    conf = transformers.AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(conf, dtype=dtype)


def _spec(mid, cfg=None):
    entry = load(mid)
    return build_spec(mid, None, "catalog", cfg or entry["config"], None)


@pytest.mark.parametrize("mid", IDS)
def test_params_blocks_and_bf16_bytes_equal_meta_model(mid):
    entry = load(mid)
    spec = _spec(mid)
    model = _meta_model(entry["config"])
    by_block: dict[str, int] = {}
    total = nbytes = 0
    for name, p in model.named_parameters():  # tied parameters appear once, under their first name
        by_block[block_of(name)] = by_block.get(block_of(name), 0) + p.numel()
        total += p.numel()
        nbytes += p.numel() * p.element_size()
    assert spec.params_total == total
    ours = {b.name: b.params_total for b in spec.blocks if b.params_total}
    assert ours == by_block
    assert sum(memory.weight_bytes_by_block(spec, "bf16").values()) == nbytes
    # every module holding parameters or buffers is inside one of the device-map blocks
    names = {b.name for b in spec.blocks}
    for name, _ in list(model.named_parameters()) + list(model.named_buffers()):
        assert block_of(name) in names, name


@pytest.mark.parametrize("mid", ["meta-llama/Llama-3.3-70B-Instruct", "mistralai/Mixtral-8x7B-v0.1",
                                 "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V2-Lite", "microsoft/phi-4"])
def test_bitsandbytes_converts_exactly_the_linear_class(mid):
    from transformers import BitsAndBytesConfig
    from transformers.quantizers import AutoHfQuantizer

    entry = load(mid)
    spec = _spec(mid)
    model = _meta_model(entry["config"])
    hq = AutoHfQuantizer.from_config(BitsAndBytesConfig(load_in_8bit=True), pre_quantized=False)
    hq.preprocess_model(model, device_map="auto")
    converted = sum(m.weight.numel() for m in model.modules() if type(m).__name__ == "Linear8bitLt")
    rows = sum(m.weight.shape[0] for m in model.modules() if type(m).__name__ == "Linear8bitLt")
    assert converted == sum(b.params.get("linear", 0) for b in spec.blocks)
    assert rows == sum(b.linear_out_features for b in spec.blocks)
    # int8: converted weights 1 byte + fp32 SCB per row; everything else bf16
    expected = converted + 4 * rows + 2 * (spec.params_total - converted)
    assert sum(memory.weight_bytes_by_block(spec, "int8").values()) == expected


def test_llama70b_quantized_sizes_match_facts():
    spec = _spec("meta-llama/Llama-3.3-70B-Instruct")
    gib = 1024**3
    int8 = sum(memory.weight_bytes_by_block(spec, "int8").values())
    nf4 = sum(memory.weight_bytes_by_block(spec, "nf4").values())
    linear = sum(b.params.get("linear", 0) for b in spec.blocks)
    rows = sum(b.linear_out_features for b in spec.blocks)
    # FACTS.md, meta-model measurements without bnb's scales: 67.67 GiB (8-bit), 35.79 GiB (4-bit)
    assert round((int8 - 4 * rows) / gib, 2) == 67.67
    assert round((nf4 - 4 * (linear // 64)) / gib, 2) == 35.79
    assert sum(memory.weight_bytes_by_block(spec, "bf16").values()) == 141_107_412_992


def test_gpt_oss_mxfp4_is_its_checkpoint_and_bf16_is_dequantized_size():
    from vplan.planner.checkpoint import CheckpointSummary

    entry = load("openai/gpt-oss-20b")
    ck = CheckpointSummary.from_dict(entry["checkpoint"])
    spec = build_spec("openai/gpt-oss-20b", None, "catalog", entry["config"], ck)
    assert ck.total_bytes == 13_761_264_768
    assert sum(memory.weight_bytes_by_block(spec, "mxfp4").values()) == 13_761_264_768
    assert round(sum(memory.weight_bytes_by_block(spec, "bf16").values()) / 1024**3, 2) == 38.96


# ---------------------------------------------------------------- KV cache against a real cache


def _shrink(cfg: dict, layers: int) -> dict:
    c = copy.deepcopy({k: v for k, v in cfg.items() if k != "quantization_config"})
    c["num_hidden_layers"] = layers
    c["vocab_size"] = 512
    for k in ("pad_token_id", "bos_token_id", "eos_token_id"):
        c[k] = None
    for k in ("intermediate_size", "moe_intermediate_size"):
        if c.get(k):
            c[k] = 64
    for k in ("num_local_experts", "num_experts", "n_routed_experts"):
        if c.get(k):
            c[k] = 4
    if c.get("n_group"):
        c["n_group"], c["topk_group"] = 1, 1
    for k in ("num_experts_per_tok", "experts_per_token"):
        if c.get(k):
            c[k] = 2
    if c.get("n_shared_experts"):
        c["n_shared_experts"] = 1
    if "first_k_dense_replace" in c:
        c["first_k_dense_replace"] = 1
    if isinstance(c.get("layer_types"), list):
        c["layer_types"] = c["layer_types"][:layers]
    if c.get("max_window_layers"):
        c["max_window_layers"] = min(c["max_window_layers"], layers)
    return c


def _small_model(cfg: dict):
    conf = transformers.AutoConfig.for_model(**cfg)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(conf, dtype=torch.bfloat16).eval()


def _cache_bytes(model, tokens: int) -> int:
    ids = torch.randint(0, model.config.vocab_size, (1, tokens))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    total = 0
    for layer in out.past_key_values.layers:
        for t in (layer.keys, layer.values):
            total += t.numel() * t.element_size()
    return total


KV_CASES = [
    ("meta-llama/Llama-3.3-70B-Instruct", 2, 40),  # GQA 8 kv heads
    ("deepseek-ai/deepseek-llm-7b-chat", 2, 40),  # MHA
    ("Qwen/Qwen2.5-7B-Instruct", 2, 40),
    ("Qwen/Qwen3-8B", 2, 40),
    ("microsoft/phi-4", 2, 40),
    ("mistralai/Mixtral-8x7B-v0.1", 2, 40),
    ("deepseek-ai/DeepSeek-V2.5", 2, 40),  # MLA latent
    ("openai/gpt-oss-20b", 4, 200),  # sliding window 128 past the window
]


@pytest.mark.parametrize("mid,layers,tokens", KV_CASES)
def test_kv_cache_bytes_equal_real_cache(mid, layers, tokens):
    small = _shrink(load(mid)["config"], layers)
    spec = build_spec(mid, None, "catalog", small, None)
    model = _small_model(small)
    assert memory.kv_cache_bytes(spec, tokens, 1, 2) == _cache_bytes(model, tokens)
    # growth per token past every window equals kv_bytes_per_token
    grow = _cache_bytes(model, tokens + 8) - _cache_bytes(model, tokens)
    assert grow == 8 * memory.kv_bytes_per_token(spec, 2)


def test_published_kv_per_token_of_full_models():
    assert memory.kv_bytes_per_token(_spec("deepseek-ai/DeepSeek-V2.5"), 2) == 69_120  # FACTS.md
    assert memory.kv_bytes_per_token(_spec("openai/gpt-oss-20b"), 2) == 24_576
    assert memory.kv_bytes_per_token(_spec("meta-llama/Llama-3.3-70B-Instruct"), 2) == 327_680
    # gpt-oss keeps 127 tokens per sliding layer: 25,338 bytes/token averaged at 4,096 tokens
    spec = _spec("openai/gpt-oss-20b")
    assert round(memory.kv_cache_bytes(spec, 4096, 1, 2) / 4096) == 25_338
