"""Per-architecture parameter layout, from config.json alone (verified against transformers' meta model).

``build_spec()`` turns a config into Blocks (placement units with parameter counts by weight class and the
shapes of quantizable Linear weights) and AttentionLayers (what each layer caches per token). Multimodal
configs (model/multimodal.py) are sized from their text_config with the same text layouts, plus the vision
tower and projector the runtime loads. An architecture vplan cannot derive the KV cache and activations of is
refused with UnsupportedModelError: never a plan that looks like it fits.
"""
from __future__ import annotations

from vplan.planner.source.checkpoint import CheckpointSummary
from vplan.planner.errors import MalformedConfigError, UnsupportedModelError
from vplan.planner.model.multimodal import FAMILIES as MULTIMODAL, loaded_checkpoint, vision_blocks
from vplan.planner.model.multimodal import resolve as resolve_multimodal, resolve_text
from vplan.planner.model.behaviours import DEFAULT_TRANSFORMERS, behaviour, normalize_version
from vplan.planner.model.spec import AttentionLayer, Block, MoeSpec, ModelSpec
from vplan.planner.model.validate import validate_config

DENSE = {"llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text"}
MOE = {"mixtral", "qwen3_moe", "deepseek_v2", "deepseek_v3", "gpt_oss", "llama4_text"}
SUPPORTED = DENSE | MOE
MODELLED_TEXT = ", ".join(sorted(SUPPORTED | set(MULTIMODAL)))
QK_NORM = {"qwen3", "qwen3_moe", "gemma3_text"}
FOUR_NORMS = {"gemma2", "gemma3_text"}
SCALED_EMBEDDING = {"gemma", "gemma2", "gemma3_text"}  # ScaledWordEmbedding with an embed_scale buffer
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32", "half": "fp16", "float": "fp32"}


def _class_default(mt: str, key: str, transformers: str):
    """The config class's default for ``key`` (behaviour config_defaults), for a config.json that leaves it out."""
    return behaviour("config_defaults", transformers)["class"][mt][key]


def _req(c: dict, key: str, model_id: str):
    if key not in c or c[key] is None:
        raise MalformedConfigError(f"config.json of {model_id} has no {key!r}; is it a causal language model config?")
    v = c[key]
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
        raise MalformedConfigError(f"config.json of {model_id}: {key} = {v!r} is not a positive integer; fix the config")
    return v


def _first(c: dict, *keys, default=None):
    """Hub configs use the raw names, configs saved by transformers 5 the attribute_map targets."""
    for k in keys:
        if c.get(k) is not None:
            return c[k]
    return default


EXPERT_KEYS = {"mixtral": ("num_local_experts", "num_experts"), "gpt_oss": ("num_local_experts", "num_experts"),
               "llama4_text": ("num_local_experts",),
               "qwen3_moe": ("num_experts", "num_local_experts"),
               "deepseek_v2": ("n_routed_experts", "num_experts", "num_local_experts"),
               "deepseek_v3": ("n_routed_experts", "num_local_experts", "num_experts")}


def _rotary_buffer_bytes(mt: str, c: dict, hd: int) -> int:
    """inv_freq + original_inv_freq (fp32) of each rotary embedding (gemma3: one per layer type)."""
    rp = c.get("rope_parameters") if isinstance(c.get("rope_parameters"), dict) else {}
    if mt in ("deepseek_v2", "deepseek_v3"):
        dim = c["qk_rope_head_dim"]
    else:
        f = _first(c, "partial_rotary_factor", default=None)
        if f is None:
            f = rp.get("partial_rotary_factor", 1.0) if "rope_type" in rp or not rp else 1.0
        dim = int(hd * f)
    sets = 2 if mt == "gemma3_text" else 1
    return sets * 2 * 4 * ((dim + 1) // 2)


def normalize_quant(config: dict) -> dict | None:
    q = config.get("quantization_config")
    if not isinstance(q, dict):
        return None
    method = str(q.get("quant_method", "")).lower()
    out = {"method": method, "raw": q}
    if method in ("gptq", "awq"):
        out["bits"] = _first(q, "bits", "w_bit", default=4)
        out["group_size"] = _first(q, "group_size", "q_group_size", default=128)
    if method == "bitsandbytes":
        out["load_in_4bit"] = bool(q.get("load_in_4bit"))
        out["load_in_8bit"] = bool(q.get("load_in_8bit"))
    if method == "fp8":
        out["weight_block_size"] = q.get("weight_block_size")
    return out


def build_spec(model_id: str, revision: str | None, source: str, config: dict,
               checkpoint: CheckpointSummary | None, notes: tuple[str, ...] = (), *,
               transformers: str = DEFAULT_TRANSFORMERS) -> ModelSpec:
    """The ModelSpec of a config.json (+ checkpoint summary) as ``transformers`` (major.minor) loads it."""
    transformers = normalize_version(transformers)
    mt = str(config.get("model_type", "")).lower() if isinstance(config, dict) else ""
    if mt != "llama4_text":  # llama4_text: checked with its config class's defaults filled in (resolve_text)
        validate_config(config, model_id)
    c = config
    quant = normalize_quant(config) or normalize_quant(c)
    dtype = DTYPES.get(str(c.get("dtype") or c.get("torch_dtype") or config.get("torch_dtype") or "bfloat16"), "bf16")
    if mt in MULTIMODAL:
        comp = resolve_multimodal(model_id, c, checkpoint, transformers)
        return _text_spec(model_id, revision, source, config, loaded_checkpoint(mt, checkpoint), quant,
                          dtype, notes, transformers, arch=mt, layout=comp.text_layout, c=comp.text,
                          prefix=comp.text_prefix, tied=comp.tied, head=vision_blocks(comp),
                          warnings=comp.notes)
    if mt not in SUPPORTED:
        raise UnsupportedModelError(
            f"{model_id}: architecture {mt!r} is not modelled by vplan: its KV cache and activations cannot be derived, "
            f"so no plan could be trusted to fit. Modelled: {MODELLED_TEXT}"
            "; open an issue with the config")
    if mt == "llama4_text":  # derived fields (no-rope, MoE and chunked layers) as Llama4TextConfig sets them
        c = resolve_text(model_id, c, transformers)
    return _text_spec(model_id, revision, source, config, checkpoint, quant, dtype, notes, transformers, arch=mt,
                      layout=mt, c=c, prefix="model",
                      tied=bool(c.get("tie_word_embeddings", _class_default(mt, "tie_word_embeddings", transformers))),
                      head=[], warnings=())


def _text_spec(model_id, revision, source, config, checkpoint, quant, dtype, notes, transformers, *, arch, layout,
               c, prefix, tied, head, warnings) -> ModelSpec:
    """The spec of a text model of layout ``layout`` (config ``c``) whose blocks live under ``prefix``; ``head``:
    blocks ahead of it in the loaded class (a vision tower and projector); ``warnings``: what the plan assumes."""
    mt = layout
    h = _req(c, "hidden_size", model_id)
    L = _req(c, "num_hidden_layers", model_id)
    H = _req(c, "num_attention_heads", model_id)
    KVH = c.get("num_key_value_heads") or H
    hd = c.get("head_dim") or h // H
    V = _req(c, "vocab_size", model_id)
    I = c.get("intermediate_size") or 0

    moe = _moe_spec(mt, c, L, model_id, transformers)
    fp16_fp32 = behaviour("keep_in_fp32_if_fp16", transformers).get(mt, ())
    scaled_emb = 1 if mt in SCALED_EMBEDDING else 0  # gemma's ScaledWordEmbedding.embed_scale buffer
    blocks = list(head) + [
        Block(f"{prefix}.embed_tokens", None, {"embedding": V * h}, compute_buffer_elements=scaled_emb),
        Block(f"{prefix}.rotary_emb", None, {}, fixed_buffer_bytes=_rotary_buffer_bytes(mt, c, hd))]
    for i in range(L):
        blocks.append(_layer(mt, c, i, h, H, KVH, hd, I, moe, transformers, prefix))
    blocks.append(Block(f"{prefix}.norm", None, {"other": h}, fp32_if_fp16=h if "norm" in fp16_fp32 else 0))
    blocks.append(Block("lm_head", None, {} if tied else {"lm_head": V * h}))
    attn = tuple(_attention(mt, c, i, KVH, hd, transformers) for i in range(L))
    return ModelSpec(
        model_id=model_id, revision=revision, source=source, architecture=arch, hidden_size=h, num_layers=L,
        num_heads=H, num_kv_heads=KVH, head_dim=hd, intermediate_size=I, vocab_size=V, tie_word_embeddings=tied,
        max_position_embeddings=c.get("max_position_embeddings"), config_dtype=dtype, blocks=tuple(blocks),
        attention=attn, moe=moe, checkpoint=checkpoint, checkpoint_quant=quant, warnings=tuple(warnings),
        notes=tuple(notes), config=config, transformers=transformers, text_architecture=mt, text_config=c,
        text_prefix=prefix,
    )


def _is_moe_layer(mt: str, c: dict, i: int) -> bool:
    if mt in ("mixtral", "gpt_oss"):
        return True
    if mt == "qwen3_moe":  # modeling_qwen3_moe.py Qwen3MoeDecoderLayer.__init__
        if i in (c.get("mlp_only_layers") or []):
            return False
        step = c.get("decoder_sparse_step", 1) or 1
        return (_first(c, *EXPERT_KEYS[mt], default=0) or 0) > 0 and (i + 1) % step == 0
    if mt in ("deepseek_v2", "deepseek_v3"):
        # transformers 5.23 builds the MoE block for every layer >= first_k_dense_replace and ignores
        # moe_layer_freq (modeling_deepseek_v2.py DeepseekV2DecoderLayer.__init__); so do we.
        return i >= (c.get("first_k_dense_replace") or 0)
    if mt == "llama4_text":  # Llama4TextDecoderLayer: is_moe_layer = layer_idx in config.moe_layers
        return i in c["moe_layers"]
    return False


def _moe_spec(mt: str, c: dict, L: int, model_id: str, transformers: str) -> MoeSpec | None:
    if mt not in MOE:
        return None
    E = _first(c, *EXPERT_KEYS[mt], default=0) or 0
    topk = _first(c, "experts_per_token", "num_experts_per_tok") if mt == "gpt_oss" else _first(c, "num_experts_per_tok")
    if topk is None:
        topk = _class_default(mt, "num_experts_per_tok", transformers)
    if not topk:
        raise MalformedConfigError(f"config.json of {model_id} has no num_experts_per_tok; fix the config")
    moe_i = c.get("moe_intermediate_size") or c.get("intermediate_size")
    layers = sum(1 for i in range(L) if _is_moe_layer(mt, c, i))
    h = c["hidden_size"]
    per_layer = E * (3 * h * moe_i + (2 * moe_i + h if mt == "gpt_oss" else 0))
    shared = 1 if mt == "llama4_text" else c.get("n_shared_experts") or 0  # Llama4TextMoe.shared_expert
    return MoeSpec(E, shared, topk, moe_i, layers, per_layer)


def _mlp_linears(mt: str, h: int, inter: int) -> list[tuple[int, int]]:
    if mt == "phi3":  # fused gate_up_proj (modeling_phi3.py Phi3MLP)
        return [(2 * inter, h), (h, inter)]
    return [(inter, h), (inter, h), (h, inter)]  # gate, up, down


ATTN_BIAS_FLAG = {"llama", "qwen3", "qwen3_moe", "gpt_oss", "gemma2", "gemma3_text", "llama4_text"}  # q,k,v,o bias=attention_bias
MLP_BIAS_FLAG = {"llama", "deepseek_v2"}  # gate/up/down bias=mlp_bias


def _layer(mt, c, i, h, H, KVH, hd, I, moe: MoeSpec | None, transformers: str, prefix: str) -> Block:
    linears: list[tuple[int, int]] = []
    bias = 0
    other = 2 * h  # input + post-attention norms
    fp16_fp32 = behaviour("keep_in_fp32_if_fp16", transformers).get(mt, ())
    fp32_if_fp16 = h * sum(n in fp16_fp32 for n in ("input_layernorm", "post_attention_layernorm"))
    fp32_buffers = fp32_params = 0
    experts = routed = ebias = 0
    eshapes: tuple[tuple[int, int, int], ...] = ()
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
        if c.get("attention_bias"):  # q_a_proj, kv_a_proj_with_mqa, o_proj (q_proj / kv_b_proj: bias=False)
            bias += (qr or 0) + kvr + rope + h
    else:
        if mt == "phi3":
            linears += [(H * hd + 2 * KVH * hd, h), (h, H * hd)]  # fused qkv_proj
        else:
            linears += [(H * hd, h), (KVH * hd, h), (KVH * hd, h), (h, H * hd)]
        if mt == "qwen2":
            bias += H * hd + 2 * KVH * hd  # q, k, v always biased, o not
        elif mt in ATTN_BIAS_FLAG and c.get("attention_bias"):
            bias += H * hd + 2 * KVH * hd + h
        if mt in QK_NORM:
            other += 2 * hd
        if mt == "gpt_oss":
            other += H  # attention sinks
    # feed-forward
    mlp_bias = mt in MLP_BIAS_FLAG and bool(c.get("mlp_bias"))
    if moe is not None and _is_moe_layer(mt, c, i):
        E, mi = moe.n_routed_experts, moe.moe_intermediate_size
        eshapes = ((E, 2 * mi, h), (E, h, mi))
        if mt == "gpt_oss":
            ebias = E * (2 * mi + h)  # gate_up_proj_bias, down_proj_bias
            routed = E * 3 * h * mi + ebias
            other += E * h + E  # router weight + bias
        elif mt == "llama4_text":
            # Llama4TextExperts runs every expert (dense bmm over all E), so none is "routed" (skipped) per token;
            # its gate_up_proj is (E, h, 2I): the (experts, out, in) shapes FP8Experts re-creates it with are used
            experts = E * 3 * h * mi
            other += E * h  # Llama4Router: an nn.Linear subclass, which bitsandbytes and FP8 leave alone
            linears += _mlp_linears(mt, h, mi)  # shared_expert
        else:
            routed = E * 3 * h * mi
            other += E * h  # router (a bare Parameter, not nn.Linear)
            if mt in ("deepseek_v2", "deepseek_v3") and behaviour("deepseek_router_fp32", transformers):
                fp32_params += E * h
        if mt == "deepseek_v3" and behaviour("deepseek_v3_e_score_bias_fp32", transformers):
            fp32_buffers += 4 * E  # gate.e_score_correction_bias, _keep_in_fp32_modules_strict
        experts = experts or routed
        if moe.n_shared_experts and mt in ("deepseek_v2", "deepseek_v3"):
            linears += _mlp_linears(mt, h, mi * moe.n_shared_experts)
            if mlp_bias:
                bias += 2 * mi * moe.n_shared_experts + h
    else:
        linears += _mlp_linears(mt, h, c["intermediate_size_mlp"] if mt == "llama4_text" else I)
        if mlp_bias:
            bias += 2 * I + h
    params = {"linear": sum(o * n for o, n in linears), "other": other}
    if bias:
        params["linear_bias"] = bias
    if experts:
        params["experts"] = experts
    return Block(f"{prefix}.layers.{i}", i, params, tuple(linears), routed, expert_shapes=eshapes,
                 expert_bias_params=ebias, fixed_buffer_bytes=fp32_buffers, fp32_if_fp16=fp32_if_fp16,
                 fp32_params=fp32_params)


def _layer_types(mt: str, c: dict, transformers: str) -> list[str] | None:
    lt = c.get("layer_types")
    if isinstance(lt, list) and lt:
        return [str(x) for x in lt]
    L = c["num_hidden_layers"]
    if mt == "gemma2":
        return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(L)]
    if mt == "gemma3_text":
        pat = c.get("sliding_window_pattern") or _class_default(mt, "sliding_window_pattern", transformers)
        return ["full_attention" if (i + 1) % pat == 0 else "sliding_attention" for i in range(L)]
    # Without layer_types the cache marks a layer sliding when its config has a sliding_window
    # (cache_utils.get_layer_types_and_kwargs); qwen configs null it unless use_sliding_window, and only
    # qwen2/qwen3 derive per-layer types from max_window_layers (configuration_qwen2.py / _qwen3.py).
    sw = c.get("sliding_window")
    if mt in ("mistral", "mixtral", "phi3") and sw:
        return ["sliding_attention"] * L
    if mt == "qwen3_moe" and sw and c.get("use_sliding_window"):
        return ["sliding_attention"] * L
    if mt in ("qwen2", "qwen3") and sw and c.get("use_sliding_window"):
        mwl = c.get("max_window_layers", _class_default(mt, "max_window_layers", transformers))
        return ["sliding_attention" if i >= mwl else "full_attention" for i in range(L)]
    return None


def _attention(mt: str, c: dict, i: int, KVH: int, hd: int, transformers: str) -> AttentionLayer:
    if mt in ("deepseek_v2", "deepseek_v3"):
        return AttentionLayer(i, "mla", c["kv_lora_rank"] + c["qk_rope_head_dim"])
    types = _layer_types(mt, c, transformers)
    layer_type = types[i] if types else "full_attention"
    cache = behaviour("cache_layer_of_type", transformers).get(layer_type)
    if cache is None:
        raise UnsupportedModelError(f"layer type {layer_type!r} (layer {i}) is not one vplan can size the cache of; "
                                    "open an issue with the config")
    kind = "chunked" if layer_type == "chunked_attention" else cache
    window = (c.get("attention_chunk_size") if kind == "chunked" else c.get("sliding_window")) if cache == "sliding" \
        else None
    if cache == "sliding" and not window:
        kind = "full"
    if mt in ("qwen2", "qwen3", "qwen3_moe") and not c.get("use_sliding_window") and \
            behaviour("qwen_sliding_only_with_use_sliding_window", transformers):
        kind, window = "full", None  # the config class sets sliding_window = None
    return AttentionLayer(i, kind, 2 * KVH * hd, (window - 1) if window else None, window if window else None)
