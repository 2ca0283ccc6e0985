"""ModelSpec: the architecture facts the memory model needs, from config.json + checkpoint metadata.

Blocks are the placement units an explicit ``device_map`` names in transformers 5
(``model.embed_tokens``, ``model.layers.N``, ``model.norm``, ``model.rotary_emb``, ``lm_head``; a multimodal
model loaded whole puts its text model under ``model.language_model`` and adds its vision tower and projector
blocks, ``ModelSpec.text_prefix``), with parameter counts by weight class:

- ``linear``: weights of ``nn.Linear`` modules that bitsandbytes / fine-grained fp8 replace
- ``linear_bias``: their biases (kept in the compute dtype)
- ``experts``: fused MoE expert tensors (3-D ``nn.Parameter``; not ``nn.Linear``, so bitsandbytes leaves
  them in bf16 -- checked on the meta model: Mixtral int8 converts 128 Linear modules, the 4 attention
  projections of 32 layers, and no expert or router)
- ``embedding``, ``lm_head`` (bitsandbytes skips the output embedding), ``other`` (norms, routers, sinks).

What bitsandbytes converts (transformers 5.23, ``integrations/bitsandbytes.py::replace_with_bnb_linear``):
modules whose type is exactly ``nn.Linear`` (or ``Conv1D``), except ``get_keys_to_not_convert`` of
``quantizers/base.py`` (tied weights, the last parameter's module, the output embedding = ``lm_head``),
``llm_int8_skip_modules`` and ``_keep_in_fp32_modules``; with ``llm_int8_enable_fp32_cpu_offload`` also every
module the device map puts on cpu/disk. Fused experts (3-D ``nn.Parameter``) and routers (``*TopKRouter``
with a bare ``weight`` Parameter) are not ``nn.Linear`` and stay in the compute dtype. Fine-grained FP8
(``integrations/finegrained_fp8.py::replace_with_fp8_linear``) converts the same Linears AND modules named
``*.experts`` (``FP8Experts``, fp8 weights + fp32 128x128 block scales; biased experts such as gpt-oss's
are rejected).

Buffers are counted apart from parameters (``Block.fixed_buffer_bytes``, ``compute_buffer_elements``): the
rotary ``inv_freq``/``original_inv_freq`` (fp32 whatever the dtype), vision position ids (int64), gemma's
``embed_scale`` (compute dtype) and DeepSeek-V3's ``e_score_correction_bias`` (``_keep_in_fp32_modules_strict``: fp32 under bf16
and fp16, ``modeling_utils.PreTrainedModel._get_dtype_plan``). ``fp32_if_fp16`` counts parameters kept
in fp32 only when loading in fp16 (``_keep_in_fp32_modules``, e.g. gpt-oss norms).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from vplan.planner.source.checkpoint import CheckpointSummary

WEIGHT_CLASSES = ("linear", "linear_bias", "experts", "embedding", "lm_head", "other")


@dataclass(frozen=True)
class Block:
    name: str
    layer_index: int | None
    params: dict[str, int]
    linear_shapes: tuple[tuple[int, int], ...] = ()  # (out, in) of each quantizable nn.Linear
    routed_expert_params: int = 0  # of params["experts"]: routed (only top_k of n are read per token)
    expert_shapes: tuple[tuple[int, int, int], ...] = ()  # (experts, out, in) of each fused expert weight
    expert_bias_params: int = 0  # of params["experts"]: expert biases (gpt-oss), not weight matrices
    fixed_buffer_bytes: int = 0  # buffers whose dtype does not follow the load dtype (fp32 rotary, int64 ids)
    compute_buffer_elements: int = 0  # buffers held in the compute dtype
    fp32_if_fp16: int = 0  # parameters upcast to fp32 when loading in fp16 (_keep_in_fp32_modules)
    fp32_params: int = 0  # parameters kept in fp32 whatever the dtype (_keep_in_fp32_modules_strict), never quantized
    runs_in_generate: bool = True  # False: never called by a text-only generate() (vision tower, projector)

    @cached_property
    def params_total(self) -> int:
        return sum(self.params.values())

    @cached_property
    def linear_out_features(self) -> int:
        return sum(o for o, _ in self.linear_shapes)


@dataclass(frozen=True)
class AttentionLayer:
    index: int
    kind: str  # "full" | "sliding" | "chunked" (Llama 4: cached like sliding, window = chunk) | "mla"
    kv_elements_per_token: int  # K+V elements one token adds to this layer's cache
    window_tokens: int | None = None  # tokens a sliding layer shows (transformers: sliding_window - 1)
    # DynamicSlidingWindowLayer keeps a *view* of the last sliding_window - 1 tokens of the tensor it
    # concatenated (cache_utils.py): after a decode step the storage holds sliding_window tokens, after a
    # prefill of P tokens it still holds all P until the next update. memory.py sizes the storage.
    sliding_window: int | None = None


@dataclass(frozen=True)
class MoeSpec:
    n_routed_experts: int
    n_shared_experts: int
    top_k: int
    moe_intermediate_size: int
    moe_layers: int
    expert_params_per_layer: int = 0  # routed expert parameters in one MoE layer (weights + biases)


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
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    config: dict = field(default_factory=dict, compare=False, repr=False)
    transformers: str = "5.24"  # the transformers version (major.minor) whose behaviour the spec follows
    # the text model: its layout name in model/architectures.py (architecture for a text model; e.g. gemma3_text
    # for gemma3), its config with the config classes' defaults filled in, and where its blocks live
    text_architecture: str = ""
    text_config: dict = field(default_factory=dict, compare=False, repr=False)
    text_prefix: str = "model"

    @property
    def text_arch(self) -> str:
        return self.text_architecture or self.architecture

    @property
    def text_cfg(self) -> dict:
        return self.text_config or self.config

    def layer_block(self, index: int) -> str:
        return f"{self.text_prefix}.layers.{index}"

    @property
    def embed_block(self) -> str:
        return f"{self.text_prefix}.embed_tokens"

    @cached_property
    def params_total(self) -> int:
        return sum(b.params_total for b in self.blocks)

    @cached_property
    def params_active(self) -> int:
        """Parameters a text-only generate() computes with per token (top_k of the routed experts; no vision)."""
        idle = sum(b.params_total for b in self.blocks if not b.runs_in_generate)
        if not self.moe or not self.moe.n_routed_experts:
            return self.params_total - idle
        routed = sum(b.routed_expert_params for b in self.blocks)
        return self.params_total - idle - routed + routed * self.moe.top_k // self.moe.n_routed_experts

    @property
    def params_by_class(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.blocks:
            for k, v in b.params.items():
                out[k] = out.get(k, 0) + v
        return out

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(name)

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
