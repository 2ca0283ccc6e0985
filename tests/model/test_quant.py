"""Quantized sizes against the transformers quantizers run on meta models, and stored checkpoints."""
import pytest
import torch

from .conftest import catalog_config, default_config, meta_bytes_by_block, meta_model, spec_of
from vplan.planner.memory import weights as memory

GIB = 1024**3
BNB_CASES = ["meta-llama/Llama-3.3-70B-Instruct", "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen3-30B-A3B",
             "deepseek-ai/DeepSeek-V2-Lite", "microsoft/phi-4", "openai/gpt-oss-20b", "Qwen/Qwen2.5-7B-Instruct"]


def _quantized_meta(cfg, qconfig, pre_quantized=False):
    from transformers.quantizers import AutoHfQuantizer

    model = meta_model(cfg)
    hq = AutoHfQuantizer.from_config(qconfig, pre_quantized=pre_quantized)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # from_pretrained replaces modules under the load dtype (local_torch_dtype)
    try:
        hq.preprocess_model(model, device_map="auto")
    finally:
        torch.set_default_dtype(prev)
    return model, hq


def _quantizer_bytes(cfg, qconfig) -> tuple[int, list]:
    """Bytes as transformers' quantizer accounts them (param_element_size: 1 / 0.5 byte for the weights it
    quantizes; FACTS' 67.67 / 35.79 GiB), every other tensor in the load dtype of the plain meta model."""
    plain = dict(meta_model(cfg).named_parameters())
    plain.update(dict(meta_model(cfg).named_buffers()))
    model, hq = _quantized_meta(cfg, qconfig)
    total = 0
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if hq.param_needs_quantization(model, name):
            total += t.numel() * hq.param_element_size(model, name, t)
        else:
            total += t.numel() * plain[name].element_size()
    quantized = [m for m in model.modules() if type(m).__name__ in ("Linear8bitLt", "Linear4bit")]
    return int(total), quantized


def _cfg(mid):
    return default_config("gemma2") if mid == "gemma2" else catalog_config(mid)


@pytest.mark.parametrize("mid", BNB_CASES + ["gemma2"])
def test_bnb_int8_and_nf4_equal_quantizer_on_meta(mid):
    from transformers import BitsAndBytesConfig

    cfg = _cfg(mid)
    spec = spec_of(mid, cfg)
    # int8: 1 byte per quantized weight + the fp32 SCB per output row that Int8Params gains when quantized
    t8, lin8 = _quantizer_bytes(cfg, BitsAndBytesConfig(load_in_8bit=True))
    assert memory.weight_bytes(spec, "int8") == t8 + sum(4 * m.out_features for m in lin8)
    # nf4: 0.5 byte per weight (packed) + fp32 absmax per 64 values + the 16-entry fp32 code of each QuantState
    t4, lin4 = _quantizer_bytes(cfg, BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"))
    extra = sum(4 * -(-m.in_features * m.out_features // 64) + 64 for m in lin4)
    assert memory.weight_bytes(spec, "nf4") == t4 + extra
    # what bnb leaves alone: lm_head, embeddings, norms, routers, fused experts
    assert len(lin8) == len(lin4) == sum(len(b.linear_shapes) for b in spec.blocks)
    assert sorted((m.out_features, m.in_features) for m in lin8) == sorted(s for b in spec.blocks for s in b.linear_shapes)


def test_llama70b_bnb_sizes_match_facts():
    spec = spec_of("l", catalog_config("meta-llama/Llama-3.3-70B-Instruct"))
    rows = sum(b.linear_out_features for b in spec.blocks)
    shapes = [s for b in spec.blocks for s in b.linear_shapes]
    absmax = sum(4 * -(-o * i // 64) + 64 for o, i in shapes)
    # FACTS.md (meta model, without bnb's scales): 67.67 GiB 8-bit, 35.79 GiB 4-bit, 141,107,412,992 B bf16
    assert round((memory.weight_bytes(spec, "int8") - 4 * rows) / GIB, 2) == 67.67
    assert round((memory.weight_bytes(spec, "nf4") - absmax) / GIB, 2) == 35.79
    assert memory.weight_bytes(spec, "bf16") - 512 == 141_107_412_992  # 512 B: rotary inv_freq buffers


def test_int8_equals_a_real_bnb_int8_checkpoint():
    """jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment (bnb 8-bit save of Llama-3.1-8B-Instruct): index
    total_size 9,086,705,888 = int8 weights + F32 SCB + F16 rest + one U8 weight_format per Linear (224)."""
    spec = spec_of("l", catalog_config("meta-llama/Llama-3.1-8B-Instruct"))
    linears = sum(len(b.linear_shapes) for b in spec.blocks)
    assert linears == 224
    assert memory.weight_bytes(spec, "int8") - 512 + linears == 9_086_705_888


@pytest.mark.parametrize("mid", ["Qwen/Qwen3-32B", "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V2-Lite",
                                 "meta-llama/Llama-3.1-8B", "mistralai/Mixtral-8x7B-v0.1"])
def test_fp8_equals_finegrained_fp8_quantizer_on_meta(mid):
    """FineGrainedFP8 converts nn.Linear AND fused experts (FP8Experts) with fp32 128x128 block scales."""
    from transformers import FineGrainedFP8Config

    cfg = catalog_config(mid)
    m, _ = _quantized_meta(cfg, FineGrainedFP8Config(weight_block_size=[128, 128]), pre_quantized=True)
    _, b = meta_bytes_by_block(m)
    assert memory.weight_bytes_by_block(spec_of(mid, cfg), "fp8") == b


def test_fp8_rejects_biased_experts():
    with pytest.raises(ValueError, match="FP8Experts"):
        memory.weight_bytes(spec_of("g", catalog_config("openai/gpt-oss-20b")), "fp8")


def test_fp8_checkpoint_kept_as_stored():
    from vplan.planner.source.catalog import load
    from vplan.planner.source.checkpoint import CheckpointSummary

    e = load("Qwen/Qwen3-32B-FP8")
    ck = CheckpointSummary.from_dict(e["checkpoint"])
    spec = spec_of("q", e["config"], ck)
    assert memory.weight_bytes(spec, "fp8") == ck.total_bytes + 512
    assert memory.weight_bytes(spec_of("q", e["config"]), "fp8") == ck.total_bytes + 512  # analytic agrees


def test_gpt_oss_mxfp4_and_bf16():
    """Checkpoint (index total_size) 13,761,264,768 B: experts as U8 blocks+scales, biases and the rest bf16.
    Held by Mxfp4GptOssExperts: the same, but expert biases in fp32 (+2 B each), plus rotary buffers."""
    from vplan.planner.source.catalog import load
    from vplan.planner.source.checkpoint import CheckpointSummary

    e = load("openai/gpt-oss-20b")
    ck = CheckpointSummary.from_dict(e["checkpoint"])
    spec = spec_of("openai/gpt-oss-20b", e["config"], ck)
    ebias = sum(b.expert_bias_params for b in spec.blocks)
    assert ebias == 24 * 32 * (2 * 2880 + 2880)
    assert memory.weight_bytes(spec, "mxfp4") == 13_761_264_768 + 2 * ebias + 256
    assert memory.weight_bytes(spec_of("g", e["config"]), "mxfp4") == 13_761_264_768 + 2 * ebias + 256
    _, meta = meta_bytes_by_block(meta_model(e["config"]))
    assert memory.weight_bytes(spec, "bf16") == sum(meta.values())
    assert round(memory.weight_bytes(spec, "bf16") / GIB, 2) == 38.96  # FACTS.md


def test_gptq_analytic_layout_equals_catalog_checkpoint_blocks():
    """AutoGPTQ 4-bit/group 64 layout (I32 qweight/qzeros/g_idx, F16 scales; catalog entry derived with the
    same layout on the meta device by the catalog builder)."""
    from vplan.planner.source.catalog import load
    from vplan.planner.source.checkpoint import CheckpointSummary

    e = load("TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ")
    ck = CheckpointSummary.from_dict(e["checkpoint"])
    analytic = memory.weight_bytes_by_block(spec_of("w", e["config"]), "gptq-int4")
    stored = memory.weight_bytes_by_block(spec_of("w", e["config"], ck), "gptq-int4")
    assert analytic == stored


def test_cpu_offload_fp32_is_four_bytes_a_parameter():
    spec = spec_of("l", catalog_config("meta-llama/Llama-3.1-8B"))
    w = memory.weight_bytes_by_block(spec, "int8", cpu_offload_fp32=True)
    assert w["model.layers.0"] == 4 * spec.block("model.layers.0").params_total
    assert memory.weight_bytes(spec, "bf16") > memory.weight_bytes(spec, "int8") > memory.weight_bytes(spec, "nf4")
    with pytest.raises(ValueError):
        memory.weight_bytes(spec, "int3")


def test_fp8_checkpoint_dequantized_to_fp32_as_the_installed_transformers_loads_it(tmp_path):
    """A tiny fine-grained FP8 checkpoint (Linear weights e4m3 + fp32 32x32 block scales, the rest bf16) loaded on a
    CPU in fp32 is dequantized: the Linears become fp32 in both releases; the unscaled tensors (embeddings, norms,
    lm_head) stay bf16 in 5.23 and become fp32 in 5.24 (behaviour fp8_dequant_unscaled_take_load_dtype)."""
    import json

    import transformers
    from safetensors.torch import save_file

    cfg = dict(default_config("llama"), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
    conf = transformers.AutoConfig.for_model(**cfg)
    model = transformers.AutoModelForCausalLM.from_config(conf, dtype=torch.bfloat16)
    lin = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"}
    sd = {}
    for n, t in model.state_dict().items():
        if n.rsplit(".", 1)[0] in lin and n.endswith(".weight"):
            o, i = t.shape
            blocks = t.float().reshape(o // 32, 32, i // 32, 32)
            scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-6) / 448.0
            sd[n] = (blocks / scale[:, None, :, None]).reshape(o, i).to(torch.float8_e4m3fn).contiguous()
            sd[n.replace(".weight", ".weight_scale_inv")] = scale.contiguous()
        else:
            sd[n] = t.contiguous().clone()
    save_file(sd, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    quant = {"quant_method": "fp8", "weight_block_size": [32, 32], "activation_scheme": "dynamic"}
    (tmp_path / "config.json").write_text(json.dumps({**conf.to_dict(), "quantization_config": quant}))
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    truth = sum(t.numel() * t.element_size() for t in list(loaded.parameters()) + list(loaded.buffers()))
    spec = spec_of("fp8", {**cfg, "quantization_config": quant})
    assert memory.weight_bytes(spec, "fp32") == truth
