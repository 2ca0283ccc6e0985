"""Per-architecture parameter layout, from config.json alone (verified against transformers' meta model).

``analyze()`` turns a config into Blocks (placement units with parameter counts by weight class and the
shapes of quantizable Linear weights) and AttentionLayers (what each layer caches per token).
Unknown architectures fall back to the checkpoint's bytes per block, with a visible warning.
"""
from __future__ import annotations

from .checkpoint import CheckpointSummary
from .errors import MalformedConfigError, UnsupportedModelError
from .model import AttentionLayer, Block, MoeSpec, ModelSpec

DENSE = {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text"}
MOE = {"mixtral", "qwen3_moe", "deepseek_v2", "deepseek_v3", "gpt_oss"}
SUPPORTED = DENSE | MOE
QK_NORM = {"qwen3", "qwen3_moe", "gemma3_text"}
FOUR_NORMS = {"gemma2", "gemma3_text"}
TIED_DEFAULT = {"gemma", "gemma2", "gemma3_text"}
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32"}


def _text_config(config: dict) -> dict:
    """Multimodal wrappers (gemma3, ...) keep the language model in ``text_config``."""
    tc = config.get("text_config")
    if isinstance(tc, dict) and config.get("model_type") in ("gemma3", "gemma3n", "llama4", "mistral3"):
        merged = dict(tc)
        merged.setdefault("model_type", config["model_type"] + "_text")
        if "tie_word_embeddings" in config and "tie_word_embeddings" not in tc:
            merged["tie_word_embeddings"] = config["tie_word_embeddings"]
        return merged
    return config


def _req(c: dict, key: str, model_id: str):
    if key not in c or c[key] is None:
        raise MalformedConfigError(f"config.json of {model_id} has no {key!r}; is it a causal language model config?")
    v = c[key]
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise MalformedConfigError(f"config.json of {model_id}: {key} = {v!r} is not a positive integer; fix the config")
    return v


def normalize_quant(config: dict) -> dict | None:
    q = config.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method", "")).lower()
    out = {"method": method, "raw": q}
    if method in ("gptq", "awq"):
        out["bits"] = q.get("bits", q.get("w_bit", 4))
        out["group_size"] = q.get("group_size", q.get("q_group_size", 128))
    if method == "bitsandbytes":
        out["load_in_4bit"] = bool(q.get("load_in_4bit"))
        out["load_in_8bit"] = bool(q.get("load_in_8bit"))
    if method == "fp8":
        out["weight_block_size"] = q.get("weight_block_size")
    return out


def analyze(model_id: str, revision: str | None, source: str, config: dict,
            checkpoint: CheckpointSummary | None, notes: tuple[str, ...] = ()) -> ModelSpec:
    if not isinstance(config, dict):
        raise MalformedConfigError(f"config.json of {model_id} is not a JSON object; fix or re-download it")
    c = _text_config(config)
    mt = str(c.get("model_type", "")).lower()
    quant = normalize_quant(config) or normalize_quant(c)
    dtype = DTYPES.get(str(c.get("dtype") or c.get("torch_dtype") or config.get("torch_dtype") or "bfloat16"), "bf16")
    if mt not in SUPPORTED:
        return _fallback(model_id, revision, source, c, checkpoint, quant, dtype, notes)

    h = _req(c, "hidden_size", model_id)
    L = _req(c, "num_hidden_layers", model_id)
    H = _req(c, "num_attention_heads", model_id)
    KVH = c.get("num_key_value_heads") or H
    hd = c.get("head_dim") or h // H
    V = _req(c, "vocab_size", model_id)
    I = c.get("intermediate_size") or 0
    tied = bool(c.get("tie_word_embeddings", mt in TIED_DEFAULT))

    moe = _moe_spec(mt, c, L)
    blocks = [Block("model.embed_tokens", None, {"embedding": V * h}), Block("model.rotary_emb", None, {})]
    for i in range(L):
        blocks.append(_layer(mt, c, i, h, H, KVH, hd, I, moe))
    blocks.append(Block("model.norm", None, {"other": h}))
    blocks.append(Block("lm_head", None, {} if tied else {"lm_head": V * h}))
    attn = tuple(_attention(mt, c, i, KVH, hd) for i in range(L))
    return ModelSpec(
        model_id=model_id, revision=revision, source=source, architecture=mt, hidden_size=h, num_layers=L,
        num_heads=H, num_kv_heads=KVH, head_dim=hd, intermediate_size=I, vocab_size=V, tie_word_embeddings=tied,
        max_position_embeddings=c.get("max_position_embeddings"), config_dtype=dtype, blocks=tuple(blocks),
        attention=attn, moe=moe, checkpoint=checkpoint, checkpoint_quant=quant, known_architecture=True,
        warnings=(), notes=notes, config=config,
    )


def _is_moe_layer(mt: str, c: dict, i: int) -> bool:
    if mt in ("mixtral", "gpt_oss"):
        return True
    if mt == "qwen3_moe":
        if i in (c.get("mlp_only_layers") or []):
            return False
        step = c.get("decoder_sparse_step", 1) or 1
        return c.get("num_experts", 0) > 0 and (i + 1) % step == 0
    if mt in ("deepseek_v2", "deepseek_v3"):
        return (c.get("n_routed_experts") is not None and i >= c.get("first_k_dense_replace", 0)
                and i % (c.get("moe_layer_freq", 1) or 1) == 0)
    return False


def _moe_spec(mt: str, c: dict, L: int) -> MoeSpec | None:
    if mt not in MOE:
        return None
    n = {"mixtral": "num_local_experts", "qwen3_moe": "num_experts", "gpt_oss": "num_local_experts"}.get(mt, "n_routed_experts")
    k = {"gpt_oss": "experts_per_token"}.get(mt, "num_experts_per_tok")
    E = c.get(n) or 0
    topk = c.get(k) or c.get("num_experts_per_tok") or 2
    moe_i = c.get("moe_intermediate_size") or c.get("intermediate_size")
    layers = sum(1 for i in range(L) if _is_moe_layer(mt, c, i))
    return MoeSpec(E, c.get("n_shared_experts") or 0, topk, moe_i, layers)


def _mlp_linears(h: int, inter: int) -> list[tuple[int, int]]:
    return [(inter, h), (inter, h), (h, inter)]  # gate, up, down (phi3 fuses gate+up: same counts)


def _layer(mt, c, i, h, H, KVH, hd, I, moe: MoeSpec | None) -> Block:
    linears: list[tuple[int, int]] = []
    bias = 0
    other = 2 * h  # input + post-attention norms
    experts = routed = 0
    if mt in FOUR_NORMS:
        other += 2 * h
    # attention
    if mt in ("deepseek_v2", "deepseek_v3"):
        nope, rope, vhd = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        kvr, qr = c["kv_lora_rank"], c.get("q_lora_rank")
        if qr:
            linears += [(qr, h), (H * (nope + rope), qr)]
            other += qr
        else:
            linears.append((H * (nope + rope), h))
        linears += [(kvr + rope, h), (H * (nope + vhd), kvr), (h, H * vhd)]
        other += kvr
        if c.get("attention_bias"):
            bias += (qr or 0) + (kvr + rope) if qr else (H * (nope + rope)) + (kvr + rope)
    else:
        linears += [(H * hd, h), (KVH * hd, h), (KVH * hd, h), (h, H * hd)]
        if mt == "qwen2" or (mt in ("llama", "qwen3", "qwen3_moe", "gpt_oss", "mistral") and c.get("attention_bias")):
            bias += H * hd + 2 * KVH * hd
            if mt != "qwen2":
                bias += h
        if mt in QK_NORM:
            other += 2 * hd
        if mt == "gpt_oss":
            other += H  # attention sinks
    # feed-forward
    if moe is not None and _is_moe_layer(mt, c, i):
        E, mi = moe.n_routed_experts, moe.moe_intermediate_size
        if mt == "gpt_oss":
            routed = E * (h * 2 * mi + 2 * mi + mi * h + h)  # fused gate_up/down with their biases
            other += E * h + E  # router weight + bias
        else:
            routed = E * 3 * h * mi
            other += E * h  # router
        experts = routed
        if moe.n_shared_experts and mt in ("deepseek_v2", "deepseek_v3"):
            linears += _mlp_linears(h, mi * moe.n_shared_experts)
    else:
        linears += _mlp_linears(h, I)
        if mt == "llama" and c.get("mlp_bias"):
            bias += 2 * I + h
    params = {"linear": sum(o * n for o, n in linears), "other": other}
    if bias:
        params["linear_bias"] = bias
    if experts:
        params["experts"] = experts
    return Block(f"model.layers.{i}", i, params, tuple(linears), routed)


def _layer_types(mt: str, c: dict) -> list[str] | None:
    lt = c.get("layer_types")
    if isinstance(lt, list) and lt:
        return [str(x) for x in lt]
    L = c["num_hidden_layers"]
    if mt == "gemma2":
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)]
    if mt == "gemma3_text":
        pat = c.get("sliding_window_pattern", 6) or 6
        return ["full_attention" if (i + 1) % pat == 0 else "sliding_attention" for i in range(L)]
    sw = c.get("sliding_window")
    if mt in ("mistral", "mixtral") and sw:
        return ["sliding_attention"] * L
    if mt in ("qwen2", "qwen3", "qwen3_moe") and sw and c.get("use_sliding_window"):
        mwl = c.get("max_window_layers", L)
        return ["sliding_attention" if i >= mwl else "full_attention" for i in range(L)]
    return None


def _attention(mt: str, c: dict, i: int, KVH: int, hd: int) -> AttentionLayer:
    if mt in ("deepseek_v2", "deepseek_v3"):
        return AttentionLayer(i, "mla", c["kv_lora_rank"] + c["qk_rope_head_dim"])
    types = _layer_types(mt, c)
    kind = "sliding" if types and types[i] == "sliding_attention" else "full"
    window = c.get("sliding_window") if kind == "sliding" else None
    if kind == "sliding" and not window:
        kind = "full"
    return AttentionLayer(i, kind, 2 * KVH * hd, (window - 1) if window else None)


def _fallback(model_id, revision, source, c, checkpoint, quant, dtype, notes) -> ModelSpec:
    mt = c.get("model_type") or "unknown"
    if not checkpoint or not checkpoint.bytes_by_block:
        raise UnsupportedModelError(
            f"{model_id}: architecture {mt!r} is not modelled by vplan and no per-tensor checkpoint metadata is "
            "available to size it; use a safetensors checkpoint (Hub or local folder) or open an issue"
        )
    # Sizes: stored bytes per block as parameters at 2 bytes (bf16 equivalent); KV from standard fields.
    blocks = tuple(Block(name, _layer_idx(name), {"other": b // 2}) for name, b in checkpoint.bytes_by_block.items())
    h = c.get("hidden_size") or 0
    H = c.get("num_attention_heads") or 1
    KVH = c.get("num_key_value_heads") or H
    hd = c.get("head_dim") or (h // H if h else 0)
    L = c.get("num_hidden_layers") or sum(1 for b in blocks if b.layer_index is not None)
    attn = tuple(AttentionLayer(i, "full", 2 * KVH * hd) for i in range(L)) if hd else ()
    warn = (f"architecture {mt!r} is not modelled: weights from checkpoint metadata bytes per block, KV cache "
            f"assumed full attention with {KVH} KV heads x {hd} dims, activations not estimated; treat as approximate")
    return ModelSpec(
        model_id=model_id, revision=revision, source=source, architecture=mt, hidden_size=h, num_layers=L, num_heads=H,
        num_kv_heads=KVH, head_dim=hd, intermediate_size=c.get("intermediate_size") or 0, vocab_size=c.get("vocab_size") or 0,
        tie_word_embeddings=bool(c.get("tie_word_embeddings", False)), max_position_embeddings=c.get("max_position_embeddings"),
        config_dtype=dtype, blocks=blocks, attention=attn, moe=None, checkpoint=checkpoint, checkpoint_quant=quant,
        known_architecture=False, warnings=(warn,), notes=notes, config=c,
    )


def _layer_idx(name: str) -> int | None:
    last = name.rsplit(".", 1)[-1]
    return int(last) if last.isdigit() else None
