"""Activation peak of ``generate()`` (bytes beyond weights and KV cache), analytic. Pure Python.

Closed forms read off the simulator (runtime/simulate.py: transformers 5.23 ``generate()`` on fake CUDA
tensors, SDPA routed as on an H100), which they are held to by benchmarks/accuracy.py and tests/sim.
B batch, P prompt tokens, h hidden, I intermediate, H heads, hd head_dim, d dtype bytes:

- sdpa, dense: the MLP of the last prefill layer: d·B·P·3·I (silu(gate), up, their product; phi3's fused
  gate_up keeps its 2I output alive: 4·I) + d·B·P·4·h (embeddings output, layer input, residual, norm
  output) + d·B·P·2·hd (cos/sin).
- eager: the scores at the softmax: 5·d·B·H·P² (bf16 scores, fp32 copy, fp32 softmax) + d·B·P² (causal
  mask) + q and repeated K/V (d·B·P·H·hd, ×3 with GQA). gpt-oss (eager only: attention sinks) concatenates
  a sink column and subtracts the max in bf16: 6.0625·B·H·P² at the ``sub``.
- MoE prefill: per (token, routed expert) pair max(4h (DeepSeek: 6h, fp32 copies), 4·moe_I + h) elements
  in flight; shared experts 3·moe_I·n_shared per token. MoE decode: the selected experts' weights are
  copied per token (batched_mm path): B·top_k·3·h·moe_I elements (+ gpt-oss biases); the peak at short
  prompts.
- MLA (deepseek_v2/v3): the cached latent is expanded per head for the whole prompt at every layer:
  d·B·P·H·(2·(nope+rope) + v) (81,920 B per cached token per layer for DeepSeek-V2.5).
- gemma2 (eager only: logit soft-capping) / gemma3: the sliding layers' mask next to the full one (eager
  d·B·P²; sdpa B·P² bool, when P > sliding_window, converted to an additive d·B·P² mask inside the
  sliding layers' SDPA); gemma3 holds two rotary tables (global, local).
  repeat_kv of a single KV head is a view (no K/V copies).
- last-token logits (generate passes logits_to_keep=1): B·V·(d + 4) (bf16 and the fp32 copy).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

SCRATCH_BYTES = 256 * 1024  # masks, position ids, small temporaries (~130 KB measured for a 70B)
MLA = ("deepseek_v2", "deepseek_v3")
GEMMA = ("gemma2", "gemma3_text")
EAGER_ONLY = ("gpt_oss", "gemma2")  # transformers 5.23 has no sdpa path (attention sinks / logit soft-capping)
_EXPERTS = {"mixtral": ("num_local_experts",), "gpt_oss": ("num_local_experts",), "qwen3_moe": ("num_experts",),
            "qwen2_moe": ("num_experts",), "deepseek_v2": ("n_routed_experts",), "deepseek_v3": ("n_routed_experts",)}


@dataclass(frozen=True)
class ActivationShape:
    """The sizes the activation peak depends on (from a raw HF config dict or a planner ModelSpec)."""

    architecture: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    moe_top_k: int = 0
    moe_intermediate_size: int = 0
    moe_layers: int = 0
    moe_shared_experts: int = 0
    mla_qk_nope_head_dim: int = 0
    mla_qk_rope_head_dim: int = 0
    mla_v_head_dim: int = 0
    sliding_window: int = 0  # gemma2/3: sliding layers get their own attention mask

    @classmethod
    def from_config(cls, config: dict) -> "ActivationShape":
        c = config
        mt = str(c.get("model_type", "")).lower()
        h, L, H = int(c["hidden_size"]), int(c["num_hidden_layers"]), int(c["num_attention_heads"])
        kw: dict = {}
        experts = next((c[k] for k in _EXPERTS.get(mt, ()) if c.get(k)), 0)
        if experts:
            kw.update(moe_top_k=int(c.get("experts_per_token") or c.get("num_experts_per_tok") or 2),
                      moe_intermediate_size=int(c.get("moe_intermediate_size") or c.get("intermediate_size")),
                      moe_layers=sum(_is_moe_layer(mt, c, i) for i in range(L)),
                      moe_shared_experts=int(c.get("n_shared_experts") or 0))
        if mt in MLA:
            kw.update(mla_qk_nope_head_dim=int(c.get("qk_nope_head_dim", 128)),
                      mla_qk_rope_head_dim=int(c.get("qk_rope_head_dim", 64)), mla_v_head_dim=int(c.get("v_head_dim", 128)))
        if mt in GEMMA:
            kw.update(sliding_window=int(c.get("sliding_window") or 0))
        return cls(architecture=mt, hidden_size=h, num_layers=L, num_heads=H,
                   num_kv_heads=int(c.get("num_key_value_heads") or H), head_dim=int(c.get("head_dim") or h // H),
                   intermediate_size=int(c.get("intermediate_size") or 0), vocab_size=int(c["vocab_size"]), **kw)

    @classmethod
    def from_spec(cls, spec) -> "ActivationShape":
        """From planner.model.ModelSpec (same numbers as from_config(spec.config) for known architectures)."""
        moe, c = spec.moe, spec.config or {}
        kw: dict = {}
        if moe and moe.moe_layers:
            kw.update(moe_top_k=moe.top_k, moe_intermediate_size=moe.moe_intermediate_size, moe_layers=moe.moe_layers,
                      moe_shared_experts=moe.n_shared_experts)
        if spec.architecture in MLA:
            kw.update(mla_qk_nope_head_dim=int(c.get("qk_nope_head_dim", 128)),
                      mla_qk_rope_head_dim=int(c.get("qk_rope_head_dim", 64)), mla_v_head_dim=int(c.get("v_head_dim", 128)))
        if spec.architecture in GEMMA:
            kw.update(sliding_window=int(c.get("sliding_window") or 0))
        return cls(architecture=spec.architecture, hidden_size=spec.hidden_size, num_layers=spec.num_layers,
                   num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads, head_dim=spec.head_dim,
                   intermediate_size=spec.intermediate_size, vocab_size=spec.vocab_size, **kw)

    def to_dict(self) -> dict:
        return asdict(self)


def _is_moe_layer(mt: str, c: dict, i: int) -> bool:
    if mt in ("mixtral", "gpt_oss"):
        return True
    if mt in ("qwen3_moe", "qwen2_moe"):  # Qwen3MoeDecoderLayer.__init__
        step = c.get("decoder_sparse_step", 1) or 1
        return i not in (c.get("mlp_only_layers") or []) and (i + 1) % step == 0
    if mt in MLA:  # transformers 5.23: every layer >= first_k_dense_replace (moe_layer_freq ignored)
        return i >= (c.get("first_k_dense_replace") or 0)
    return False


@dataclass(frozen=True)
class ActivationEstimate:
    peak_bytes: int
    phase: str  # "prefill" | "decode"
    where: str
    terms: dict

    def to_dict(self) -> dict:
        return asdict(self)


def activation_peak_bytes(shape, *, batch: int, prompt_tokens: int, attn_implementation: str,
                          dtype_bytes: int = 2) -> ActivationEstimate:
    """Peak activation bytes of ``generate()`` with a prompt of ``prompt_tokens`` (prefill, or a MoE decode
    step when that is larger). ``shape``: an ActivationShape, a raw HF config dict, or a ModelSpec."""
    s = _shape(shape)
    B, P, d = batch, prompt_tokens, dtype_bytes
    h, H, KVH, hd, I, V, mt = (s.hidden_size, s.num_heads, s.num_kv_heads, s.head_dim, s.intermediate_size,
                               s.vocab_size, s.architecture)
    attn = "eager" if mt in EAGER_ONLY else attn_implementation
    terms: dict[str, int] = {}
    if s.moe_layers:
        k, mi = s.moe_top_k, s.moe_intermediate_size
        terms["moe"] = d * B * P * k * max(6 * h if mt in MLA else 4 * h, 4 * mi + h)
        terms["moe_decode"] = d * B * k * (3 * h * mi + (2 * mi + h if mt == "gpt_oss" else 0))
        if s.moe_shared_experts:
            terms["shared_mlp"] = d * B * P * 3 * mi * s.moe_shared_experts
        if s.num_layers > s.moe_layers and I:
            terms["mlp"] = d * B * P * 3 * I
    elif I:
        terms["mlp"] = d * B * P * (4 if mt == "phi3" else 3) * I
    if mt in MLA:
        terms["mla_expand"] = d * B * P * H * (2 * (s.mla_qk_nope_head_dim + s.mla_qk_rope_head_dim) + s.mla_v_head_dim)
    if attn == "eager":
        terms["scores"] = int(6.0625 * B * H * P * P) if mt == "gpt_oss" else 5 * d * B * H * P * P + d * B * P * P
        terms["qkv"] = d * B * P * H * hd * (1 if KVH in (1, H) else 3)  # repeat_kv of one head is a view
    if mt in GEMMA and s.sliding_window:  # the sliding layers' mask, next to the full one (eager: bf16 additive;
        if attn == "eager":  # sdpa: a bool mask, only when the prompt is longer than the window)
            terms["sliding_mask"] = d * B * P * P
        elif P > s.sliding_window:  # ... which SDPA converts to an additive mask in the sliding layers'
            terms["sliding_mask"] = B * P * P  # attention, next to q and the output (the residual is the input)
            terms["sdpa_mask"] = d * B * P * P + 2 * d * B * P * H * hd - d * B * P * h
    ffn = max((terms.get(t, 0) for t in ("mlp", "moe", "shared_mlp")), default=0)
    attn_peak = terms.get("scores", 0) + terms.get("qkv", 0) + terms.get("mla_expand", 0) + terms.get("sdpa_mask", 0)
    masks = terms.get("sliding_mask", 0)
    if attn_peak > ffn:
        peak, where = attn_peak, ("attention scores (eager softmax)" if "scores" in terms else
                                  "MLA latent expansion" if "mla_expand" in terms else "sliding-window SDPA mask")
    else:
        peak, where = ffn, "MoE experts" if "moe" in terms else "MLP (gate/up product)"
    rope_sets = 2 if mt == "gemma3_text" else 1  # gemma3: global and local rotary tables
    terms.update(hidden=d * B * P * 4 * h, rope=d * B * P * 2 * hd * rope_sets, logits=B * V * (d + 4),
                 scratch=SCRATCH_BYTES)
    total = peak + masks + terms["hidden"] + terms["rope"] + terms["logits"] + SCRATCH_BYTES
    phase = "prefill"
    decode = terms.get("moe_decode", 0) + terms["logits"] + SCRATCH_BYTES
    if decode > total:
        total, phase, where = decode, "decode", "MoE experts (selected experts copied per decode step)"
    return ActivationEstimate(peak_bytes=total, phase=phase, where=where, terms=terms)


def predicted_peak_tensor_bytes(config: dict, *, batch: int, prompt_tokens: int, attn_implementation: str,
                                precision: str = "bf16", dtype_bytes: int = 2,
                                weight_bytes: int | None = None, kv_bytes: int | None = None) -> dict:
    """What the simulator measures, predicted: weights + KV of the prompt (the peak is in the last prefill
    layer, all layers' prompt KV held) + activations. Weights/KV come from planner.memory unless given.
    Returns {peak_bytes, weights, kv, activations, phase, where}."""
    from vplan.planner.memory import weights as memory
    from vplan.planner.model.spec import build_spec

    cfg = {k: v for k, v in config.items() if k != "quantization_config"} if precision == "bf16" else config
    spec = build_spec(str(config.get("_name_or_path") or "config"), None, "config", cfg, None)
    w = memory.weight_bytes(spec, precision) if weight_bytes is None else weight_bytes
    kv = memory.kv_cache_bytes(spec, prompt_tokens, batch, dtype_bytes) if kv_bytes is None else kv_bytes
    act = activation_peak_bytes(ActivationShape.from_config(cfg), batch=batch, prompt_tokens=prompt_tokens,
                                attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
    return {"peak_bytes": w + kv + act.peak_bytes, "weights": w, "kv": kv, "activations": act.peak_bytes,
            "phase": act.phase, "where": act.where}


def _shape(x) -> ActivationShape:
    if isinstance(x, ActivationShape):
        return x
    if isinstance(x, dict):
        return ActivationShape.from_config(x)
    return ActivationShape.from_spec(x)


# ---- the names planner/budget.py and existing callers use
def estimate(spec, *, batch: int, prompt_tokens: int, attn_implementation: str, dtype_bytes: int = 2) -> ActivationEstimate:
    return activation_peak_bytes(spec, batch=batch, prompt_tokens=prompt_tokens,
                                 attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)


def activation_peak_bytes_for_spec(spec, *, batch: int, prompt_tokens: int, attn_implementation: str,
                                   dtype_bytes: int = 2) -> int:
    return estimate(spec, batch=batch, prompt_tokens=prompt_tokens, attn_implementation=attn_implementation,
                    dtype_bytes=dtype_bytes).peak_bytes
