"""The KV cache as transformers holds it, in bytes: per layer type, exact to the storage a real cache holds
(tested against a DynamicCache after a CPU forward: GQA, MHA, sliding windows, MLA latent)."""
from __future__ import annotations

from vplan.planner.model import ModelSpec


def kv_bytes_per_token(spec: ModelSpec, cache_dtype_bytes: int = 2) -> int:
    """Growth of one sequence's cache per added token once past every sliding window."""
    return sum(a.kv_elements_per_token for a in spec.attention if a.kind in ("full", "mla")) * cache_dtype_bytes


def kv_tokens_held(layer, context_tokens: int, prompt_tokens: int | None = None) -> int:
    """Tokens whose K/V storage one layer holds at its peak during a ``generate()`` that prefills
    ``prompt_tokens`` (default: the whole context, the worst case) and decodes to ``context_tokens``.

    Full/MLA layers: the context. Sliding layers (``DynamicSlidingWindowLayer``): the prompt right after
    prefill (the kept window is a view of the concatenated prompt), then ``sliding_window`` tokens of
    storage per decode step (a view of ``sliding_window - 1`` over the ``cat`` result)."""
    if layer.kind != "sliding" or not layer.sliding_window:
        return context_tokens
    prompt = context_tokens if prompt_tokens is None else min(prompt_tokens, context_tokens)
    return max(prompt, min(context_tokens, layer.sliding_window))


def kv_cache_bytes_by_block(spec: ModelSpec, context_tokens: int, batch: int, cache_dtype_bytes: int = 2, *,
                            prompt_tokens: int | None = None) -> dict[str, int]:
    """The whole cache for ``batch`` sequences (bytes of storage held, per layer block); see kv_tokens_held."""
    return {f"model.layers.{a.index}": a.kv_elements_per_token * kv_tokens_held(a, context_tokens, prompt_tokens)
            * batch * cache_dtype_bytes for a in spec.attention}


def kv_cache_bytes(spec: ModelSpec, context_tokens: int, batch: int, cache_dtype_bytes: int = 2, *,
                   prompt_tokens: int | None = None) -> int:
    return sum(kv_cache_bytes_by_block(spec, context_tokens, batch, cache_dtype_bytes,
                                       prompt_tokens=prompt_tokens).values())
