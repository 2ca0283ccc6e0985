"""Activation peak of ``generate()`` (bytes beyond weights and KV cache), analytic. Pure Python.

Closed forms read off the simulator (runtime/sim/simulate.py: transformers ``generate()`` on fake CUDA
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
  d·B·P²; sdpa B·P² bool, when P >= sliding_window, converted to an additive d·B·P² mask inside the
  sliding layers' SDPA); gemma3 holds two rotary tables (global, local).
  repeat_kv of a single KV head is a view (no K/V copies).
- with a sliding-window mask, SDPA gets repeat_kv'd K and V: copies under GQA (1 < kv_heads < heads).
- Llama 4: see :func:`_llama4` (dense bmm over every expert, bf16 eager softmax, chunked-attention masks).
- last-token logits (generate passes logits_to_keep=1): B·V·(d + 4) (bf16 and the fp32 copy).
- multimodal configs: the text model's terms (``spec.text_arch``); a text-only generate() never calls the vision
  tower or projector (they cost their weights only), and the simulated peaks of gemma3, mistral3, qwen2_5_vl and
  qwen3_vl equal their text models' (benchmarks/results/accuracy.json).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from vplan.planner.memory import kv, weights
from vplan.planner.model import ModelSpec
from vplan.planner.model.behaviours import behaviour

SCRATCH_BYTES = 256 * 1024  # masks, position ids, small temporaries (~130 KB measured for a 70B)
MLA = ("deepseek_v2", "deepseek_v3")
GEMMA = ("gemma2", "gemma3_text")


def attention_run(spec: ModelSpec, asked: str) -> str:
    """The attention generate() runs: eager for the architectures without an sdpa path (behaviour eager_only)."""
    return "eager" if spec.text_arch in behaviour("eager_only", spec.transformers) else asked


@dataclass(frozen=True)
class ActivationEstimate:
    peak_bytes: int
    phase: str  # "prefill" | "decode"
    where: str
    terms: dict

    def to_dict(self) -> dict:
        return asdict(self)


def activation_peak_bytes(spec: ModelSpec, *, batch: int, prompt_tokens: int, attn_implementation: str,
                          dtype_bytes: int = 2) -> ActivationEstimate:
    """Peak activation bytes of ``generate()`` with a prompt of ``prompt_tokens`` (prefill, or a MoE decode
    step when that is larger)."""
    B, P, d = batch, prompt_tokens, dtype_bytes
    h, H, KVH, hd, I, V, mt = (spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim,
                               spec.intermediate_size, spec.vocab_size, spec.text_arch)
    attn = attention_run(spec, attn_implementation)
    sliding_window = int(spec.text_cfg.get("sliding_window") or 0) if mt in GEMMA else 0
    terms: dict[str, int] = {}
    moe = spec.moe
    if mt == "llama4_text":
        terms.update(_llama4(spec, B, P, d, attn))
    elif moe and moe.moe_layers:
        k, mi = moe.top_k, moe.moe_intermediate_size
        terms["moe"] = d * B * P * k * max(6 * h if mt in MLA else 4 * h, 4 * mi + h)
        terms["moe_decode"] = d * B * k * (3 * h * mi + (2 * mi + h if mt == "gpt_oss" else 0))
        if moe.n_shared_experts:
            terms["shared_mlp"] = d * B * P * 3 * mi * moe.n_shared_experts
        if spec.num_layers > moe.moe_layers and I:
            terms["mlp"] = d * B * P * 3 * I
    elif I:
        terms["mlp"] = d * B * P * (4 if mt == "phi3" else 3) * I
    if mt in MLA:
        c = spec.text_cfg
        terms["mla_expand"] = d * B * P * H * (2 * (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) + c["v_head_dim"])
    if attn == "eager":
        terms["scores"] = int(6.0625 * B * H * P * P) if mt == "gpt_oss" else \
            (2 if mt == "llama4_text" else 5) * d * B * H * P * P + d * B * P * P
        terms["qkv"] = d * B * P * H * hd * (1 if KVH in (1, H) else 3)  # repeat_kv of one head is a view
    if sliding_window:  # the sliding layers' mask, next to the full one (eager: bf16 additive;
        if attn == "eager":  # sdpa: a bool mask, only when the prompt is at least the window)
            terms["sliding_mask"] = d * B * P * P
        elif P >= sliding_window:  # ... which SDPA converts to an additive mask in the sliding layers'
            terms["sliding_mask"] = B * P * P  # attention, next to q and the output (the residual is the input)
            # with a mask SDPA gets repeat_kv'd K and V (integrations/sdpa_attention.py use_gqa_in_sdpa: no
            # enable_gqa with a mask), copies unless there is one KV head or none is shared
            repeated = 2 * d * B * P * H * hd if 1 < KVH < H else 0
            terms["sdpa_mask"] = d * B * P * P + 2 * d * B * P * H * hd - d * B * P * h + repeated
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


def _llama4(spec: ModelSpec, B: int, P: int, d: int, attn: str) -> dict[str, int]:
    """Llama 4 (transformers 5.23/5.24 modeling_llama4.py): Llama4TextMoe repeats the hidden states for every expert
    and Llama4TextExperts runs dense bmm's over all of them (no experts implementation hook, no decode copies): per
    token E·(h + 4·I + 2) + h elements (routed input, gate_up, silu(gate), their product, router scores; the
    layer input); dense layers (interleaved MoE) an MLP of intermediate_size_mlp. Eager softmax stays in the
    compute dtype (2·d·B·H·P² at the softmax), and its probabilities stay referenced through the layer's
    feed-forward. Masks: the chunked layers' mask once the prompt reaches
    attention_chunk_size (sdpa: B·P² bool, materialised as in the sliding layers of gemma3); eager: an additive
    d·B·P² mask per layer type built (every type, or only those present: llama4_masks_for_present_types_only)."""
    E, mi, h, H, hd = (spec.moe.n_routed_experts, spec.moe.moe_intermediate_size, spec.hidden_size, spec.num_heads,
                       spec.head_dim)
    out = {"moe": d * B * P * (E * (h + 4 * mi + 2) + h)}
    if spec.num_layers > spec.moe.moe_layers:
        out["mlp"] = d * B * P * 3 * spec.text_cfg["intermediate_size_mlp"]
    kinds = {a.kind for a in spec.attention}
    chunk = min((a.sliding_window for a in spec.attention if a.kind == "chunked"), default=0)
    if attn == "eager":
        built = len(kinds) if behaviour("llama4_masks_for_present_types_only", spec.transformers) else 2
        if built > 1:  # the other type's mask, next to the one in the scores term
            out["sliding_mask"] = d * B * P * P * (built - 1)
        # Llama4TextDecoderLayer keeps the attention probabilities (`attention_states, _ = self.self_attn(...)`)
        # through its feed-forward, next to the layer's mask
        out["moe"] += d * B * H * P * P + d * B * P * P
    elif chunk and P >= chunk:
        KVH = spec.num_kv_heads
        out["sliding_mask"] = B * P * P
        repeated = 2 * d * B * P * H * hd if 1 < KVH < H else 0
        out["sdpa_mask"] = d * B * P * P + 2 * d * B * P * H * hd - d * B * P * h + repeated
    return out


def predicted_peak_tensor_bytes(spec: ModelSpec, *, batch: int, prompt_tokens: int, attn_implementation: str,
                                precision: str = "bf16", dtype_bytes: int = 2) -> dict:
    """The one formula for what the simulator measures: weights + KV of the prompt (the peak is in the last
    prefill layer, every layer's prompt KV held) + activations. Returns {peak_bytes, weights, kv, activations,
    phase, where}; the CLI's simulate report, the tests and benchmarks/accuracy.py all call this."""
    w = weights.weight_bytes(spec, precision)
    kv_bytes = kv.kv_cache_bytes(spec, prompt_tokens, batch, dtype_bytes)
    act = activation_peak_bytes(spec, batch=batch, prompt_tokens=prompt_tokens,
                                attn_implementation=attn_implementation, dtype_bytes=dtype_bytes)
    return {"peak_bytes": w + kv_bytes + act.peak_bytes, "weights": w, "kv": kv_bytes, "activations": act.peak_bytes,
            "phase": act.phase, "where": act.where}
