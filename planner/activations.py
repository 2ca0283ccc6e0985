"""Activation peak of a prefill (bytes beyond weights and KV cache), analytic.

Closed forms read off simulations of transformers 5.23 `generate()` (shared simulation notes; the
simulator in runtime/simulate.py is the truth they are held to):
- sdpa, dense: the MLP of the last prefill layer: 2·B·P·(3·I + 4·h + 2·hd) bytes (silu(gate), up, their
  product; embeddings output, layer input, residual, norm output; cos/sin).
- eager: the attention scores at the softmax: 10·B·H·P² (bf16 scores, fp32 copy, fp32 softmax) + the
  bf16 causal mask 2·B·P² + q, repeated K/V and hidden states.
- gpt-oss (eager only: attention sinks) concatenates a sink column and subtracts the max in bf16:
  6.0625·B·H·P² bytes at the `sub`.
- MoE prefill: per (token, expert) pair, max(4h (DeepSeek: 6h, fp32 copies), 4·moe_I + h) elements in
  flight; MoE decode: the selected experts' weights copied per token (B·top_k·3·h·moe_I elements), which
  is the peak at short prompts.
- phi3's fused gate_up keeps a 2I output alive: its MLP peak is 4I, not 3I.
- MLA (deepseek_v2/v3): the cached latent is expanded per head for the whole prompt: K and V of
  B·P·H·(nope+rope+v) elements, plus the attention itself.
- last-token logits in fp32 (generate passes logits_to_keep=1): B·V·(2+4).
"""
from __future__ import annotations

from dataclasses import dataclass

SCRATCH_BYTES = 256 * 1024  # masks, position ids, small temporaries (measured ~130 KB for 70B in simulation)


@dataclass(frozen=True)
class ActivationEstimate:
    peak_bytes: int
    phase: str
    where: str
    terms: dict


def activation_peak_bytes_for_spec(spec, *, batch: int, prompt_tokens: int, attn_implementation: str,
                                   dtype_bytes: int = 2) -> int:
    return estimate(spec, batch=batch, prompt_tokens=prompt_tokens, attn_implementation=attn_implementation,
                    dtype_bytes=dtype_bytes).peak_bytes


def estimate(spec, *, batch: int, prompt_tokens: int, attn_implementation: str, dtype_bytes: int = 2) -> ActivationEstimate:
    B, P, d = batch, prompt_tokens, dtype_bytes
    h, H, KVH, hd, I, V = spec.hidden_size, spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.intermediate_size, spec.vocab_size
    mt = spec.architecture
    attn = "eager" if mt == "gpt_oss" else attn_implementation
    hidden = d * B * P * 4 * h  # embeddings output, layer input, residual, norm output
    rope = d * B * P * 2 * hd
    logits = B * V * (d + 4)
    terms: dict[str, int] = {}
    if spec.moe and spec.moe.moe_layers:
        k, mi = spec.moe.top_k, spec.moe.moe_intermediate_size
        # routed tokens gathered per expert: 4 hidden-size vectors per (token, expert) in flight; the
        # DeepSeek-V2 path also keeps fp32 copies of them (6). Fitted to the simulator's MoE peaks.
        # and, for wide experts (Mixtral), gate_up + act + product of the routed rows plus their input
        per_copy = max(6 * h if mt in ("deepseek_v2", "deepseek_v3") else 4 * h, 4 * mi + h)
        terms["moe"] = d * B * P * k * per_copy
        # decode steps copy the selected experts' weights per token (batched_mm path)
        per_expert = 3 * h * mi + (2 * mi + h if mt == "gpt_oss" else 0)
        terms["moe_decode"] = d * B * k * per_expert
        if spec.moe.n_shared_experts:
            terms["shared_mlp"] = d * B * P * 3 * mi * spec.moe.n_shared_experts
        dense_layers = spec.num_layers - spec.moe.moe_layers
        if dense_layers and I:
            terms["mlp"] = d * B * P * 3 * I
    elif I:
        # phi3 fuses gate_up: its 2I output stays alive next to act(gate) and the product (4I, not 3I)
        terms["mlp"] = d * B * P * (4 if mt == "phi3" else 3) * I
    if mt in ("deepseek_v2", "deepseek_v3"):
        c = spec.config
        nope, r, v = c.get("qk_nope_head_dim", 128), c.get("qk_rope_head_dim", 64), c.get("v_head_dim", 128)
        terms["mla_expand"] = d * B * P * H * (2 * (nope + r) + v)
    if attn == "eager":
        if mt == "gpt_oss":
            terms["scores"] = int(6.0625 * B * H * P * P)
        else:
            terms["scores"] = 5 * d * B * H * P * P + d * B * P * P
        q_kv = d * B * P * H * hd * (1 if KVH == H else 3)
        terms["qkv"] = q_kv
    ffn = max((terms.get(t, 0) for t in ("mlp", "moe", "shared_mlp")), default=0)
    attn_peak = terms.get("scores", 0) + terms.get("qkv", 0) + terms.get("mla_expand", 0)
    if attn_peak > ffn:
        peak, where = attn_peak, "attention scores (eager softmax)" if "scores" in terms else "MLA latent expansion"
    else:
        peak, where = ffn, "MoE experts" if "moe" in terms else "MLP (gate/up product)"
    total = peak + hidden + rope + logits + SCRATCH_BYTES
    phase = "prefill"
    decode = terms.get("moe_decode", 0) + logits + SCRATCH_BYTES
    if decode > total:
        total, phase, where = decode, "decode", "MoE experts (selected experts copied per decode step)"
    terms.update(hidden=hidden, rope=rope, logits=logits)
    return ActivationEstimate(peak_bytes=total, phase=phase, where=where, terms=terms)
