"""Vision towers and projectors of the multimodal families, as blocks (parameters by weight class, the shapes of
their ``nn.Linear`` weights, buffers), from the resolved vision config (model/multimodal.py).

Closed forms read off transformers 5.23/5.24 (``modeling_siglip.py``, ``modeling_pixtral.py``,
``modeling_gemma3.py`` Gemma3MultiModalProjector, ``modeling_mistral3.py`` Mistral3MultiModalProjector,
``modeling_qwen2_5_vl.py`` / ``modeling_qwen3_vl.py`` vision models) and held to the meta-device model by
tests/model/test_multimodal.py. Weight classes follow model/spec.py: ``linear`` are exactly ``nn.Linear`` weights
(bitsandbytes and fine-grained FP8 convert them: ``quantizers/base.py get_keys_to_not_convert`` spares only tied
weights, the last parameter's module and the output embedding); convolutions, position embeddings, norms, the
bare Gemma 3 projection Parameter and SigLIP's pooling-head ``nn.MultiheadAttention`` (a Parameter + an
``nn.Linear`` subclass) are ``other``. A text-only ``generate()`` never calls these blocks
(``runs_in_generate=False``): they cost their weights only.
"""
from __future__ import annotations

from vplan.planner.model.spec import Block

ROTARY_FP32_PAIR = 2 * 4  # inv_freq + original_inv_freq, fp32


class _Acc:
    """Accumulates one block's parameters by class and its Linear shapes."""

    def __init__(self):
        self.lin: list[tuple[int, int]] = []
        self.bias = 0
        self.other = 0

    def linear(self, out_f: int, in_f: int, bias: bool = False) -> None:
        self.lin.append((out_f, in_f))
        self.bias += out_f if bias else 0

    def block(self, name: str, fixed_buffer_bytes: int = 0) -> Block:
        params = {"linear": sum(o * i for o, i in self.lin), "other": self.other}
        if self.bias:
            params["linear_bias"] = self.bias
        return Block(name, None, params, tuple(self.lin), fixed_buffer_bytes=fixed_buffer_bytes, runs_in_generate=False)


def _vit_layers(a: _Acc, layers: int, hv: int, iv: int, *, fused_qkv: bool) -> None:
    """Pre-LN ViT layers: biased q, k, v (or one fused qkv), out; fc1/fc2 biased; two LayerNorms."""
    for _ in range(layers):
        if fused_qkv:
            a.linear(3 * hv, hv, True)
        else:
            for _ in range(3):
                a.linear(hv, hv, True)
        a.linear(hv, hv, True)
        a.linear(iv, hv, True)
        a.linear(hv, iv, True)
        a.other += 4 * hv


def siglip(v: dict, name: str) -> Block:
    """SiglipVisionModel (gemma3): patch conv, position embedding, encoder, post LayerNorm [, pooling head]."""
    hv, iv, p, c = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["num_channels"]
    n = (v["image_size"] // p) ** 2
    a = _Acc()
    a.other += c * p * p * hv + hv + n * hv + 2 * hv
    _vit_layers(a, v["num_hidden_layers"], hv, iv, fused_qkv=False)
    if v["vision_use_head"]:  # SiglipMultiheadAttentionPoolingHead: probe, nn.MultiheadAttention, LayerNorm, MLP
        a.other += hv + 3 * hv * hv + 3 * hv + hv * hv + hv + 2 * hv
        a.linear(iv, hv, True)
        a.linear(hv, iv, True)
    return a.block(name, fixed_buffer_bytes=8 * n)  # embeddings.position_ids, int64


def gemma3_projector(v: dict, text_hidden: int, name: str) -> Block:
    """Gemma3MultiModalProjector: a bare (hv, h) projection Parameter and an RMSNorm(hv); the pooling has none."""
    hv = v["hidden_size"]
    a = _Acc()
    a.other += hv * text_hidden + hv
    return a.block(name)


def pixtral(v: dict, name: str) -> Block:
    """PixtralVisionModel (mistral3): patch conv (no bias), ln_pre, layers of RMSNorms + q,k,v,o + SwiGLU, no biases."""
    hv, iv, p, c = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["num_channels"]
    a = _Acc()
    a.other += c * p * p * hv + hv
    for _ in range(v["num_hidden_layers"]):
        for _ in range(4):
            a.linear(hv, hv)
        a.linear(iv, hv)
        a.linear(iv, hv)
        a.linear(hv, iv)
        a.other += 2 * hv
    head_dim = hv // v["num_attention_heads"]  # PixtralVisionConfig.__post_init__ always derives it
    return a.block(name, fixed_buffer_bytes=ROTARY_FP32_PAIR * (head_dim // 2))


def mistral3_projector(v: dict, top: dict, text_hidden: int, name: str) -> Block:
    """Mistral3MultiModalProjector: RMSNorm, patch merger Linear(hv*s^2 -> hv), linear_1, linear_2."""
    hv, h, s = v["hidden_size"], text_hidden, top["spatial_merge_size"]
    layers = top["vision_feature_layer"]
    nfl = 1 if isinstance(layers, int) else len(layers)
    bias = bool(top["multimodal_projector_bias"])
    a = _Acc()
    a.other += hv
    a.linear(hv, hv * s * s)
    a.linear(h, hv * nfl, bias)
    a.linear(h, h, bias)
    return a.block(name)


def _merger(a: _Acc, hv: int, m: int, out: int, norm: int) -> None:
    a.other += norm
    a.linear(m, m, True)
    a.linear(out, m, True)


def qwen2_5_vl(v: dict, name: str) -> Block:
    """Qwen2_5_VisionTransformerPretrainedModel: Conv3d patch embed (no bias), blocks of 2 RMSNorms, fused qkv + proj
    and a biased SwiGLU MLP, and the patch merger (RMSNorm + 2 Linears) inside the same module."""
    hv, iv, p = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    m = hv * v["spatial_merge_size"] ** 2
    a = _Acc()
    a.other += v["in_channels"] * v["temporal_patch_size"] * p * p * hv
    for _ in range(v["depth"]):
        a.linear(3 * hv, hv, True)
        a.linear(hv, hv, True)
        a.linear(iv, hv, True)
        a.linear(iv, hv, True)
        a.linear(hv, iv, True)
        a.other += 2 * hv
    _merger(a, hv, m, v["out_hidden_size"], hv)
    head_dim = hv // v["num_heads"]
    return a.block(name, fixed_buffer_bytes=ROTARY_FP32_PAIR * (head_dim // 4))


def qwen3_vl(v: dict, name: str) -> Block:
    """Qwen3VLVisionModel: Conv3d patch embed (biased), learned position embedding, ViT blocks with fused qkv, the
    merger (LayerNorm + 2 Linears) and one deepstack merger per deepstack index (LayerNorm after the shuffle)."""
    hv, iv, p = v["hidden_size"], v["intermediate_size"], v["patch_size"]
    m, out = hv * v["spatial_merge_size"] ** 2, v["out_hidden_size"]
    a = _Acc()
    a.other += v["in_channels"] * v["temporal_patch_size"] * p * p * hv + hv + v["num_position_embeddings"] * hv
    _vit_layers(a, v["depth"], hv, iv, fused_qkv=True)
    _merger(a, hv, m, out, 2 * hv)
    for _ in v["deepstack_visual_indexes"]:
        _merger(a, hv, m, out, 2 * m)
    head_dim = hv // v["num_heads"]
    return a.block(name, fixed_buffer_bytes=ROTARY_FP32_PAIR * (head_dim // 4))
