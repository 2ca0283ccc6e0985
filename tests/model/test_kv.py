"""KV cache bytes against a real transformers DynamicCache after forwards on CPU (fewer layers, real head
shapes, zero weights: values do not change cache shapes)."""
import pytest
import torch

from .conftest import cache_bytes, catalog_config, cpu_model, default_config, shrink, spec_of
from vplan.planner.memory import kv as memory

CASES = [  # (name, config, layers, prompt tokens)
    ("llama70b-gqa", lambda: catalog_config("meta-llama/Llama-3.3-70B-Instruct"), 2, 40),
    ("deepseek7b-mha", lambda: catalog_config("deepseek-ai/deepseek-llm-7b-chat"), 2, 40),
    ("qwen2.5-7b", lambda: catalog_config("Qwen/Qwen2.5-7B-Instruct"), 2, 40),
    ("qwen3-8b", lambda: catalog_config("Qwen/Qwen3-8B"), 2, 40),
    ("phi-4", lambda: catalog_config("microsoft/phi-4"), 2, 40),
    ("mixtral", lambda: catalog_config("mistralai/Mixtral-8x7B-v0.1"), 2, 40),
    ("deepseek-v2.5-mla", lambda: catalog_config("deepseek-ai/DeepSeek-V2.5"), 2, 40),
    ("gpt-oss-20b-sliding", lambda: catalog_config("openai/gpt-oss-20b"), 4, 200),  # window 128
    ("gemma2-sliding", lambda: default_config("gemma2", sliding_window=32), 2, 50),
    ("gemma3-sliding", lambda: default_config("gemma3_text", sliding_window=32), 6, 50),
    ("mistral-sliding", lambda: default_config("mistral", sliding_window=32), 2, 50),
    ("qwen2-sliding-max_window_layers", lambda: dict(catalog_config("Qwen/Qwen2.5-7B-Instruct"), use_sliding_window=True,
                                                     sliding_window=32, max_window_layers=1), 2, 50),
]


@pytest.mark.parametrize("name,cfgf,layers,tokens", CASES, ids=[c[0] for c in CASES])
def test_kv_cache_equals_real_cache(name, cfgf, layers, tokens):
    small = shrink(cfgf(), layers)
    spec = spec_of(name, small)
    model = cpu_model(small)
    ids = torch.zeros((2, tokens), dtype=torch.long)  # batch 2
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
        held, _ = cache_bytes(out.past_key_values)
        # right after prefill every layer holds the whole prompt
        assert memory.kv_cache_bytes(spec, tokens, 2, 2) == held
        cache = out.past_key_values
        for _ in range(8):  # decode 8 tokens
            cache = model(input_ids=torch.zeros((2, 1), dtype=torch.long), past_key_values=cache, use_cache=True).past_key_values
        held2, visible = cache_bytes(cache)
    # storage after decode: full/MLA layers hold the context; sliding layers `sliding_window` tokens
    assert memory.kv_cache_bytes(spec, tokens + 8, 2, 2, prompt_tokens=1) == held2
    # growth of the full/MLA part per token is kv_bytes_per_token (per sequence)
    full = [a for a in spec.attention if a.kind in ("full", "mla")]
    if len(full) == len(spec.attention):
        assert held2 - held == 2 * 8 * memory.kv_bytes_per_token(spec, 2)
    sliding = [a for a in spec.attention if a.kind == "sliding"]
    if sliding:  # visible tensors: sliding_window - 1 tokens (FACTS: 127 of 128 for gpt-oss)
        exp_visible = sum(a.kv_elements_per_token * (tokens + 8 if a.kind != "sliding" else min(tokens + 8, a.window_tokens))
                          for a in spec.attention) * 2 * 2
        assert visible == exp_visible
        assert (held2 - visible) == sum(a.kv_elements_per_token for a in sliding) * 2 * 2  # one token of slack each


def test_published_per_token_figures():
    assert memory.kv_bytes_per_token(spec_of("d", catalog_config("deepseek-ai/DeepSeek-V2.5")), 2) == 69_120
    assert memory.kv_bytes_per_token(spec_of("l", catalog_config("meta-llama/Llama-3.3-70B-Instruct")), 2) == 327_680
    g = spec_of("g", catalog_config("openai/gpt-oss-20b"))
    assert memory.kv_bytes_per_token(g, 2) == 24_576
    assert {a.window_tokens for a in g.attention if a.kind == "sliding"} == {127}
    # FACTS: 25,338 B/token averaged at 4,096 tokens counts the visible 127 tokens; storage after decoding
    # holds 128 per sliding layer, and a 4,096-token prompt holds all 4,096 until the first decode step.
    visible = sum(a.kv_elements_per_token * (min(4096, a.window_tokens) if a.kind == "sliding" else 4096)
                  for a in g.attention) * 2
    assert round(visible / 4096) == 25_338
    assert memory.kv_cache_bytes(g, 4096, 1, prompt_tokens=1) == visible + 12 * 2048
    assert memory.kv_cache_bytes(g, 4096, 1) == 4096 * 24 * 2048
