"""Weights as the runtime holds them, and the KV cache, in bytes (DESIGN.md "Memory model").

Precisions (``PRECISIONS``): bf16 / fp16 / fp32 (every parameter at that width; fp16 keeps the
``_keep_in_fp32_modules`` in fp32), int8 (bitsandbytes LLM.int8: Linear weights 1 byte + one fp32 SCB
per output row), nf4 (bitsandbytes 4-bit: 0.5 byte + one fp32 absmax per 64-element block + the
16-entry fp32 code of each QuantState, no double quantization), fp8 (fine-grained e4m3: 1 byte + one
fp32 scale per 128x128 block of each Linear and of the fused experts), mxfp4 (gpt-oss experts: 4-bit
values + one U8 scale per 32 elements; the expert biases are fp32 in ``Mxfp4GptOssExperts``), and
pre-quantized checkpoints kept as stored (gptq/awq/bnb: the checkpoint's own bytes per block, else the
analytic packed layout). What each method converts is the ``quantizer_converts`` behaviour (weight classes of
:mod:`vplan.planner.model.spec`). Buffers (rotary inv_freq, gemma embed_scale, DeepSeek-V3
e_score_correction_bias, vision position ids) are included. A fine-grained FP8 checkpoint loaded dequantized keeps
its unscaled tensors in their stored dtype or casts them to the load dtype, by transformers version
(``fp8_dequant_unscaled_take_load_dtype``).
"""
from __future__ import annotations

from vplan.planner.model.behaviours import behaviour
from vplan.planner.model.spec import Block, ModelSpec

COMPUTE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
PRECISIONS = ("bf16", "fp16", "fp32", "fp8", "mxfp4", "int8", "nf4",
              "gptq-int4", "gptq-int8", "awq-int4", "bnb-int8", "bnb-nf4")
NF4_BLOCK = 64  # bitsandbytes Params4bit blocksize used by transformers (bnb_4bit_use_double_quant=False)
NF4_CODE_BYTES = 64  # QuantState.code: the 16-value fp32 NF4 table, one per quantized weight
FP8_BLOCK = 128
MXFP4_GROUP = 32


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _buffers(b: Block, compute: int) -> int:
    """Buffers, plus the widening of parameters transformers keeps in fp32 whatever the dtype."""
    return b.fixed_buffer_bytes + b.compute_buffer_elements * compute + b.fp32_params * (4 - compute)


def _nf4_linear(o: int, i: int) -> int:
    return _cdiv(o * i, 2) + 4 * _cdiv(o * i, NF4_BLOCK) + NF4_CODE_BYTES


def _gptq_linear(o: int, i: int, bits: int, group: int, g_idx: bool) -> int:
    g = i if not group or group < 0 else group
    groups = _cdiv(i, g)
    # qweight [i*bits/32, o] I32, qzeros [groups, o*bits/32] I32, scales [groups, o] F16, g_idx [i] I32
    return i * o * bits // 8 + groups * _cdiv(o * bits, 32) * 4 + groups * o * 2 + (4 * i if g_idx else 0)


def _block_bytes(b: Block, precision: str, compute: int, quant: dict | None, converts: dict,
                 unscaled_bytes: int | None = None) -> int:
    """``converts``: the quantizer_converts behaviour; ``unscaled_bytes``: bytes per element of the tensors an FP8
    checkpoint stores without a scale when it is loaded dequantized and keeps them as stored (None: load dtype)."""
    p = b.params
    lin = p.get("linear", 0)
    exp = p.get("experts", 0)
    rest = b.params_total - lin
    if precision in COMPUTE_BYTES:
        c = COMPUTE_BYTES[precision]
        widen = 2 * b.fp32_if_fp16 if precision == "fp16" else 0
        if unscaled_bytes is not None:  # quantized Linears / experts dequantize to c, the rest stays as stored
            return (lin + exp) * c + (b.params_total - lin - exp) * unscaled_bytes + widen + _buffers(b, c)
        return b.params_total * c + widen + _buffers(b, c)
    buf = _buffers(b, compute)
    if precision in ("int8", "bnb-int8", "nf4", "bnb-nf4"):
        if converts["bitsandbytes"] != ("linear",):
            raise ValueError(f"bitsandbytes converting {converts['bitsandbytes']} is not modelled")
        if precision in ("int8", "bnb-int8"):
            return lin + 4 * b.linear_out_features + rest * compute + buf
        return sum(_nf4_linear(o, i) for o, i in b.linear_shapes) + rest * compute + buf
    if precision == "fp8":
        if b.expert_bias_params:
            raise ValueError("fp8: transformers' FP8Experts does not support biased experts (gpt-oss); use mxfp4 or bf16")
        lin_b = sum(o * i + 4 * _cdiv(o, FP8_BLOCK) * _cdiv(i, FP8_BLOCK) for o, i in b.linear_shapes)
        if "experts" not in converts["fp8"]:
            return lin_b + rest * compute + buf
        # _alloc_expert_proj: scales [E, max(cdiv(out,128), 2 for gate_up), cdiv(in,128)]
        exp_b = sum(e * o * i + 4 * e * max(_cdiv(o, FP8_BLOCK), 2 if k == 0 else 1) * _cdiv(i, FP8_BLOCK)
                    for k, (e, o, i) in enumerate(b.expert_shapes))
        return lin_b + exp_b + (rest - exp) * compute + buf
    if precision == "mxfp4":
        if "experts" not in converts["mxfp4"]:
            return b.params_total * compute + buf
        # Mxfp4GptOssExperts: U8 blocks (2 values a byte) + U8 scales per 32 values, fp32 biases
        w = sum(e * o * i // 2 + e * o * _cdiv(i, MXFP4_GROUP) for e, o, i in b.expert_shapes)
        return w + 4 * b.expert_bias_params + (b.params_total - exp) * compute + buf
    if precision.startswith(("gptq-", "awq-")):
        bits = int(precision.rsplit("int", 1)[1])
        group = int((quant or {}).get("group_size") or 128)
        g_idx = precision.startswith("gptq")
        lin_b = sum(_gptq_linear(o, i, bits, group, g_idx) for o, i in b.linear_shapes)
        return lin_b + (rest - p.get("linear_bias", 0)) * compute + p.get("linear_bias", 0) * 2 + buf
    raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")


def weight_bytes_by_block(spec: ModelSpec, precision: str, *, cpu_offload_fp32: bool = False) -> dict[str, int]:
    """Bytes of each block's weights as loaded. ``cpu_offload_fp32``: bitsandbytes'
    ``llm_int8_enable_fp32_cpu_offload`` keeps offloaded modules unquantized in fp32.
    The result is cached on the spec; treat it as read-only."""
    key = ("weights", precision, cpu_offload_fp32)
    hit = spec.memo.get(key)
    if hit is None:
        hit = spec.memo[key] = _weight_bytes_by_block(spec, precision, cpu_offload_fp32)
    return hit


def _weight_bytes_by_block(spec: ModelSpec, precision: str, cpu_offload_fp32: bool) -> dict[str, int]:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; one of {', '.join(PRECISIONS)}")
    if cpu_offload_fp32:
        return {b.name: b.params_total * 4 + _buffers(b, 4) for b in spec.blocks}
    stored = spec.checkpoint.bytes_by_block if spec.checkpoint else {}
    if _keeps_stored_format(spec, precision) and stored and precision != "mxfp4":
        # as stored (gptq/awq/bnb/fp8 checkpoints): the checkpoint's bytes + runtime buffers
        return {b.name: stored.get(b.name, 0) + _buffers(b, 2) for b in spec.blocks}
    converts = behaviour("quantizer_converts", spec.transformers)
    unscaled = _fp8_unscaled_bytes(spec) if precision in COMPUTE_BYTES else None
    return {b.name: _block_bytes(b, precision, 2, spec.checkpoint_quant, converts, unscaled) for b in spec.blocks}


def _fp8_unscaled_bytes(spec: ModelSpec) -> int | None:
    """Bytes per element an FP8 checkpoint loaded dequantized keeps its unscaled tensors in, when transformers keeps
    them as stored (5.23); None when they take the load dtype (5.24)."""
    if (spec.checkpoint_quant or {}).get("method") != "fp8" or \
            behaviour("fp8_dequant_unscaled_take_load_dtype", spec.transformers):
        return None
    return 2  # fine-grained FP8 checkpoints store embeddings, norms and lm_head in BF16 (or F16)


def _keeps_stored_format(spec: ModelSpec, precision: str) -> bool:
    q = spec.checkpoint_quant
    if not q:
        return False
    m = q["method"]
    return (m == "mxfp4" and precision == "mxfp4") or (m == "fp8" and precision == "fp8") or (
        m in ("gptq", "awq", "bitsandbytes") and precision.startswith(("gptq", "awq", "bnb")))


def weight_bytes(spec: ModelSpec, precision: str) -> int:
    return sum(weight_bytes_by_block(spec, precision).values())
