"""What a checkpoint stores: bytes and element counts per safetensors dtype and per device-map block.

Pure: no torch, no I/O. :mod:`vplan.planner.source.resolve` feeds it (name, dtype, shape) triples read from
safetensors headers (Hub, HF cache, local folder) or the bundled catalog.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable

# Bits per element of every dtype the safetensors format names (safetensors 0.8). Packed sub-byte
# dtypes (F4 = float4 e2m1, two per byte; F6 = 6-bit floats) have their logical element count in the
# header shape; their stored size is ceil(elements * bits / 8).
SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8,
    "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

# Whole bytes per element for the byte-aligned dtypes (the packed F4/F6 are left out on purpose: use
# :func:`tensor_nbytes`, which handles them).
SAFETENSORS_DTYPE_BYTES: dict[str, int] = {k: v // 8 for k, v in SAFETENSORS_DTYPE_BITS.items() if v % 8 == 0}

# Leaf names of parameters that a module owns (stripped to get the module path).
_PARAM_LEAF = re.compile(
    r"\.(weight|bias|scales?|qweight|qzeros|g_idx|SCB|weight_format|weight_scale(_inv)?|input_scale|"
    r"weight_absmax|absmax|quant_map|quant_state[\w.]*|nested_absmax|nested_quant_map|inv_freq|sinks|"
    r"e_score_correction_bias|\w+?_(blocks|scales|bias))$"
)
# A repeated-layer container followed by its index: the unit a device map names.
_LAYER_INDEX = re.compile(r"^(.*?(?:^|\.)(?:layers|h|blocks|block|layer)\.\d+)(?:\.|$)")


def tensor_nbytes(dtype: str, shape: Iterable[int]) -> int:
    """Stored bytes of one tensor (raises KeyError on a dtype safetensors does not define)."""
    bits = SAFETENSORS_DTYPE_BITS[dtype]
    return (math.prod(int(d) for d in shape) * bits + 7) // 8


def block_of(tensor_name: str) -> str:
    """The module path a device map uses for this tensor.

    ``model.layers.12.mlp.experts.3.w1.weight`` -> ``model.layers.12``; ``model.embed_tokens.weight`` ->
    ``model.embed_tokens``; ``lm_head.weight`` -> ``lm_head``; ``model.layers.0.mlp.experts.gate_up_proj_blocks``
    -> ``model.layers.0``.
    """
    m = _LAYER_INDEX.match(tensor_name)
    if m:
        return m.group(1)
    stripped = _PARAM_LEAF.sub("", tensor_name)
    if stripped == tensor_name and "." in tensor_name:
        # Unknown leaf name (a bare nn.Parameter on a module): the parent module holds it.
        stripped = tensor_name.rsplit(".", 1)[0]
    return stripped


@dataclass(frozen=True)
class CheckpointSummary:
    """Stored size of a checkpoint, from its headers or derived; ``origin`` says which."""

    total_bytes: int
    tensor_count: int
    params_by_dtype: dict[str, int]  # safetensors dtype -> element count
    bytes_by_block: dict[str, int]  # block_of(name) -> stored bytes
    format: str  # "safetensors" | "pytorch-bin" | "none"
    origin: str  # e.g. "safetensors headers", "index total_size only", "derived from config ..."
    files: tuple[str, ...] | None = None
    bytes_by_dtype: dict[str, int] = field(default_factory=dict)  # safetensors dtype -> stored bytes

    @property
    def params_total(self) -> int:
        """Stored elements (for packed/quantized checkpoints this counts stored elements, not logical weights)."""
        return sum(self.params_by_dtype.values())

    @property
    def has_tensors(self) -> bool:
        """True when per-tensor numbers back the summary (False for 'index total_size only' / file sizes)."""
        return bool(self.bytes_by_block)

    def to_dict(self) -> dict:
        return {
            "total_bytes": self.total_bytes,
            "tensor_count": self.tensor_count,
            "params_by_dtype": dict(self.params_by_dtype),
            "bytes_by_dtype": dict(self.bytes_by_dtype),
            "bytes_by_block": dict(self.bytes_by_block),
            "format": self.format,
            "origin": self.origin,
            "files": list(self.files) if self.files is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CheckpointSummary":
        files = d.get("files")
        return cls(
            total_bytes=int(d["total_bytes"]),
            tensor_count=int(d["tensor_count"]),
            params_by_dtype={str(k): int(v) for k, v in d.get("params_by_dtype", {}).items()},
            bytes_by_block={str(k): int(v) for k, v in d.get("bytes_by_block", {}).items()},
            format=str(d["format"]),
            origin=str(d["origin"]),
            files=tuple(files) if files is not None else None,
            bytes_by_dtype={str(k): int(v) for k, v in d.get("bytes_by_dtype", {}).items()},
        )


def summarize_tensors(
    tensors: Iterable[tuple[str, str, Iterable[int]]],
    *,
    format: str = "safetensors",
    origin: str = "safetensors headers",
    files: Iterable[str] | None = None,
) -> CheckpointSummary:
    """Sum (name, safetensors dtype, shape) triples into a :class:`CheckpointSummary`."""
    params: dict[str, int] = {}
    by_dtype: dict[str, int] = {}
    by_block: dict[str, int] = {}
    total = count = 0
    for name, dtype, shape in tensors:
        shape = [int(d) for d in shape]
        n = math.prod(shape)
        nbytes = tensor_nbytes(dtype, shape)
        params[dtype] = params.get(dtype, 0) + n
        by_dtype[dtype] = by_dtype.get(dtype, 0) + nbytes
        blk = block_of(name)
        by_block[blk] = by_block.get(blk, 0) + nbytes
        total += nbytes
        count += 1
    return CheckpointSummary(
        total_bytes=total, tensor_count=count, params_by_dtype=params, bytes_by_block=by_block,
        format=format, origin=origin, files=tuple(sorted(files)) if files is not None else None,
        bytes_by_dtype=by_dtype,
    )
