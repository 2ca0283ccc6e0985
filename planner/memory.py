"""Weights as the runtime holds them, and the KV cache, in bytes (DESIGN.md "Memory model").

Precisions: bf16 / fp16 / fp32 (every parameter at that width), int8 (bitsandbytes LLM.int8: Linear
weights 1 byte + one fp32 scale per output row), nf4 (bitsandbytes 4-bit: 0.5 byte + one fp32 absmax per
64-element block, no double quantization), fp8 (fine-grained e4m3: 1 byte + one fp32 scale per 128x128
block of each Linear), mxfp4 (gpt-oss experts: 4-bit values + one byte scale per 32 elements), and
pre-quantized checkpoints kept as stored (gptq/awq/bnb: the checkpoint's own bytes per block).
Everything bitsandbytes / fp8 do not convert (embeddings, lm_head, norms, routers, fused MoE experts)
stays in the compute dtype.
"""
from __future__ import annotations

from .model import Block, ModelSpec

COMPUTE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
NF4_BLOCK = 64  # bitsandbytes Params4bit blocksize used by transformers (bnb_4bit_use_double_quant=False)
FP8_BLOCK = 128
MXFP4_GROUP = 32


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _block_bytes(b: Block, precision: str, compute: int) -> int:
    p = b.params
    lin = p.get("linear", 0)
    rest = sum(v for k, v in p.items() if k != "linear")
    if precision in COMPUTE_BYTES:
        return b.params_total * COMPUTE_BYTES[precision]
    if precision == "int8":
        return lin + 4 * b.linear_out_features + rest * compute
    if precision == "nf4":
        packed = sum(_ceil_div(o * i, 2) for o, i in b.linear_shapes)
        absmax = sum(4 * _ceil_div(o * i, NF4_BLOCK) for o, i in b.linear_shapes)
        return packed + absmax + rest * compute
    if precision == "fp8":
        scales = sum(4 * _ceil_div(o, FP8_BLOCK) * _ceil_div(i, FP8_BLOCK) for o, i in b.linear_shapes)
        return lin + scales + rest * compute
    if precision == "mxfp4":
        e = p.get("experts", 0)
        # expert biases are part of "experts" in the count but stay bf16: gpt-oss keeps E*(2I+h) biases
        return _ceil_div(e, 2) + _ceil_div(e, MXFP4_GROUP) + (b.params_total - e) * compute
    raise ValueError(f"unknown precision {precision!r}")


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
    if cpu_offload_fp32:
        return {b.name: b.params_total * 4 for b in spec.blocks}
    compute = 2
    if _keeps_stored_format(spec, precision) and spec.checkpoint and spec.checkpoint.bytes_by_block:
        stored = spec.checkpoint.bytes_by_block
        if precision == "mxfp4":
            return {b.name: stored.get(b.name, _block_bytes(b, precision, compute)) for b in spec.blocks}
        return {b.name: stored.get(b.name, 0) for b in spec.blocks}
    if precision in ("gptq-int4", "awq-int4", "gptq-int8", "awq-int8", "bnb-int8", "bnb-nf4"):
        eff = {"bnb-int8": "int8", "bnb-nf4": "nf4"}.get(precision, "nf4")
        return {b.name: _block_bytes(b, eff, compute) for b in spec.blocks}
    if not spec.known_architecture:
        return {b.name: b.params_total * COMPUTE_BYTES.get(precision, 2) for b in spec.blocks}
    return {b.name: _block_bytes(b, precision, compute) for b in spec.blocks}


def _keeps_stored_format(spec: ModelSpec, precision: str) -> bool:
    q = spec.checkpoint_quant
    if not q:
        return False
    m = q["method"]
    return (m == "mxfp4" and precision == "mxfp4") or (m == "fp8" and precision == "fp8") or (
        m in ("gptq", "awq", "bitsandbytes") and precision.startswith(("gptq", "awq", "bnb")))


def weight_bytes(spec: ModelSpec, precision: str) -> int:
    return sum(weight_bytes_by_block(spec, precision).values())


def kv_bytes_per_token(spec: ModelSpec, cache_dtype_bytes: int = 2) -> int:
    """Growth of one sequence's cache per added token once past every sliding window."""
    return sum(a.kv_elements_per_token for a in spec.attention if a.kind in ("full", "mla")) * cache_dtype_bytes


def kv_cache_bytes_by_block(spec: ModelSpec, context_tokens: int, batch: int, cache_dtype_bytes: int = 2) -> dict[str, int]:
    """The whole cache for ``batch`` sequences of ``context_tokens``: sliding layers keep their window."""
    out: dict[str, int] = {}
    for a in spec.attention:
        tokens = min(context_tokens, a.window_tokens) if a.kind == "sliding" and a.window_tokens else context_tokens
        out[f"model.layers.{a.index}"] = a.kv_elements_per_token * tokens * batch * cache_dtype_bytes
    return out


def kv_cache_bytes(spec: ModelSpec, context_tokens: int, batch: int, cache_dtype_bytes: int = 2) -> int:
    return sum(kv_cache_bytes_by_block(spec, context_tokens, batch, cache_dtype_bytes).values())
