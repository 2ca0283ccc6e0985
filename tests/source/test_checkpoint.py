import pytest

from vplan.planner.source.checkpoint import (SAFETENSORS_DTYPE_BYTES, CheckpointSummary, block_of, summarize_tensors,
                                      tensor_nbytes)


@pytest.mark.parametrize("name, block", [
    ("model.layers.12.mlp.experts.3.w1.weight", "model.layers.12"),
    ("model.layers.0.mlp.experts.gate_up_proj_blocks", "model.layers.0"),
    ("model.layers.7.self_attn.sinks", "model.layers.7"),
    ("model.layers.31", "model.layers.31"),
    ("transformer.h.5.attn.c_attn.bias", "transformer.h.5"),
    ("vision_model.encoder.blocks.2.mlp.fc1.weight", "vision_model.encoder.blocks.2"),
    ("model.embed_tokens.weight", "model.embed_tokens"),
    ("lm_head.weight", "lm_head"),
    ("model.norm.weight", "model.norm"),
    ("model.rotary_emb.inv_freq", "model.rotary_emb"),
    ("transformer.wte.weight", "transformer.wte"),
    ("model.layers.3.mlp.down_proj.SCB", "model.layers.3"),
    ("model.mm_projector.gate_up_proj_scales", "model.mm_projector"),
    ("model.mm_projector.qweight", "model.mm_projector"),
])
def test_block_of(name, block):
    assert block_of(name) == block


def test_dtype_bytes_and_packed():
    assert SAFETENSORS_DTYPE_BYTES["BF16"] == 2 and SAFETENSORS_DTYPE_BYTES["F8_E4M3"] == 1
    assert SAFETENSORS_DTYPE_BYTES["F8_E8M0"] == 1 and SAFETENSORS_DTYPE_BYTES["F64"] == 8
    assert "F4" not in SAFETENSORS_DTYPE_BYTES  # packed: use tensor_nbytes
    assert tensor_nbytes("F4", [3, 5]) == 8  # 15 half-bytes -> 8 bytes
    assert tensor_nbytes("I32", []) == 4  # scalar
    with pytest.raises(KeyError):
        tensor_nbytes("F7", [1])


def test_summarize_exact_and_roundtrip():
    s = summarize_tensors([
        ("model.embed_tokens.weight", "BF16", [10, 4]),
        ("model.layers.0.mlp.up_proj.weight", "I8", [8, 4]),
        ("model.layers.0.mlp.up_proj.SCB", "F32", [8]),
        ("model.layers.1.mlp.experts.0.w1.weight", "F8_E4M3", [3, 3]),
        ("lm_head.weight", "BF16", [10, 4]),
    ], files=["b.safetensors", "a.safetensors"])
    assert s.total_bytes == 80 + 32 + 32 + 9 + 80
    assert s.params_by_dtype == {"BF16": 80, "I8": 32, "F32": 8, "F8_E4M3": 9}
    assert s.bytes_by_dtype == {"BF16": 160, "I8": 32, "F32": 32, "F8_E4M3": 9}
    assert s.bytes_by_block == {"model.embed_tokens": 80, "model.layers.0": 64, "model.layers.1": 9, "lm_head": 80}
    assert s.params_total == 129 and s.tensor_count == 5 and s.files == ("a.safetensors", "b.safetensors")
    assert CheckpointSummary.from_dict(s.to_dict()) == s
    with pytest.raises(Exception):
        s.total_bytes = 1  # frozen
