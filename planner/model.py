"""ModelSpec: the architecture facts the memory model needs, from config.json + checkpoint metadata.

Blocks are the placement units an explicit ``device_map`` names in transformers 5
(``model.embed_tokens``, ``model.layers.N``, ``model.norm``, ``model.rotary_emb``, ``lm_head``), with
parameter counts by weight class:

- ``linear``: weights of ``nn.Linear`` modules that bitsandbytes / fine-grained fp8 replace
- ``linear_bias``: their biases (kept in the compute dtype)
- ``experts``: fused MoE expert tensors (3-D ``nn.Parameter``; not ``nn.Linear``, so bitsandbytes leaves
  them in bf16 -- checked on the meta model: Mixtral int8 converts 128 Linear modules, the 4 attention
  projections of 32 layers, and no expert or router)
- ``embedding``, ``lm_head`` (bitsandbytes skips the output embedding), ``other`` (norms, routers, sinks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from .checkpoint import CheckpointSummary

WEIGHT_CLASSES = ("linear", "linear_bias", "experts", "embedding", "lm_head", "other")


@dataclass(frozen=True)
class Block:
    name: str
    layer_index: int | None
    params: dict[str, int]
    linear_shapes: tuple[tuple[int, int], ...] = ()  # (out, in) of each quantizable nn.Linear
    routed_expert_params: int = 0  # of params["experts"]: routed (only top_k of n are read per token)

    @cached_property
    def params_total(self) -> int:
        return sum(self.params.values())

    @cached_property
    def linear_out_features(self) -> int:
        return sum(o for o, _ in self.linear_shapes)


@dataclass(frozen=True)
class AttentionLayer:
    index: int
    kind: str  # "full" | "sliding" | "mla"
    kv_elements_per_token: int  # K+V elements one token adds to this layer's cache
    window_tokens: int | None = None  # tokens a sliding layer keeps (transformers: sliding_window - 1)


@dataclass(frozen=True)
class MoeSpec:
    n_routed_experts: int
    n_shared_experts: int
    top_k: int
    moe_intermediate_size: int
    moe_layers: int


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    revision: str | None
    source: str
    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int | None
    config_dtype: str
    blocks: tuple[Block, ...]
    attention: tuple[AttentionLayer, ...]
    moe: MoeSpec | None = None
    checkpoint: CheckpointSummary | None = None
    checkpoint_quant: dict | None = None
    known_architecture: bool = True
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    config: dict = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def params_total(self) -> int:
        return sum(b.params_total for b in self.blocks)

    @cached_property
    def params_active(self) -> int:
        if not self.moe or not self.moe.n_routed_experts:
            return self.params_total
        routed = sum(b.routed_expert_params for b in self.blocks)
        return self.params_total - routed + routed * self.moe.top_k // self.moe.n_routed_experts

    @cached_property
    def memo(self) -> dict:
        """Per-spec cache of derived byte tables (weights per precision), filled by memory.py."""
        return {}

    @property
    def checkpoint_bytes(self) -> int:
        if self.checkpoint and self.checkpoint.total_bytes:
            return self.checkpoint.total_bytes
        return self.params_total * _DTYPE_BYTES.get(self.config_dtype, 2)

    @property
    def checkpoint_dtype_label(self) -> str:
        if self.checkpoint_quant:
            q = self.checkpoint_quant
            bits = q.get("bits")
            return q["method"] + (f"-int{bits}" if bits and q["method"] in ("gptq", "awq") else "")
        if self.checkpoint and self.checkpoint.params_by_dtype:
            top = max(self.checkpoint.params_by_dtype.items(), key=lambda kv: kv[1])[0]
            return top.lower()
        return self.config_dtype


_DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


def build_spec(model_id: str, revision: str | None, source: str, config: dict,
               checkpoint: CheckpointSummary | None, notes: tuple[str, ...] = ()) -> ModelSpec:
    from .arch import analyze

    return analyze(model_id, revision, source, config, checkpoint, tuple(notes))
