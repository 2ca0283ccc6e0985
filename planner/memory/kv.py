"""The KV cache as transformers holds it, in bytes: per layer type, exact to the storage a real cache holds
(tested against a DynamicCache after a CPU forward: GQA, MHA, sliding windows, Llama 4 chunked and NoPE layers,
MLA latent)."""
from __future__ import annotations

from vplan.planner.model import ModelSpec
from vplan.planner.model.behaviours import behaviour

WINDOWED = ("sliding", "chunked")  # both cached in a DynamicSlidingWindowLayer (behaviour cache_layer_of_type)


def kv_bytes_per_token(spec: ModelSpec, cache_dtype_bytes: int = 2) -> int:
    """Growth of one sequence's cache per added token once past every sliding window."""
    return sum(a.kv_elements_per_token for a in spec.attention if a.kind in ("full", "mla")) * cache_dtype_bytes


def kv_tokens_held(layer, context_tokens: int, prompt_tokens: int | None = None, *, transformers: str) -> int:
    """Tokens whose K/V storage one layer holds at its peak during a ``generate()`` that prefills
    ``prompt_tokens`` (default: the whole context, the worst case) and decodes to ``context_tokens``.

    Full/MLA layers: the context. Sliding and chunked layers (``DynamicSlidingWindowLayer``): the prompt right
    after prefill (the kept window is a view of the concatenated prompt), then ``sliding_window`` tokens of
    storage per decode step (a view of ``sliding_window - 1`` over the ``cat`` result)."""
    if layer.kind not in WINDOWED or not layer.sliding_window:
        return context_tokens
    window = min(context_tokens, layer.sliding_window)
    if not behaviour("sliding_cache_holds_prompt_after_prefill", transformers):
        return window
    prompt = context_tokens if prompt_tokens is None else min(prompt_tokens, context_tokens)
    return max(prompt, window)


def kv_cache_bytes_by_block(spec: ModelSpec, context_tokens: int, batch: int, cache_dtype_bytes: int = 2, *,
                            prompt_tokens: int | None = None) -> dict[str, int]:
    """The whole cache for ``batch`` sequences (bytes of storage held, per layer block); see kv_tokens_held."""
    return {spec.layer_block(a.index): a.kv_elements_per_token
            * kv_tokens_held(a, context_tokens, prompt_tokens, transformers=spec.transformers)
            * batch * cache_dtype_bytes for a in spec.attention}


def kv_cache_bytes(spec: ModelSpec, context_tokens: int, batch: int, cache_dtype_bytes: int = 2, *,
                   prompt_tokens: int | None = None) -> int:
    return sum(kv_cache_bytes_by_block(spec, context_tokens, batch, cache_dtype_bytes,
                                       prompt_tokens=prompt_tokens).values())
