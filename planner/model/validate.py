"""config.json at the edge: every field the model layer reads, checked once, before anything is sized.

``validate_config`` runs at the top of ``build_spec`` for every architecture. A violation is one
:class:`MalformedConfigError` line that names the field, the value, what is allowed and why (exit 2); a config
that is well-formed but outside what vplan models (GPTQ with 3 bits, an unknown quantization method or layer
type) is an :class:`UnsupportedModelError`. Nothing that passes can make the planner loop for long, recurse,
divide by zero or size negative bytes.

Rules are data, keyed by architecture (``model_type``): :data:`COMMON` for every modelled one, then the entries of
:data:`RULES` (a family adds its fields there) and the cross-field checks of :data:`CHECKS`. Unknown architectures
(sized from checkpoint metadata) get the type and range checks of the fields they happen to have.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

from vplan.planner.errors import MalformedConfigError, UnsupportedModelError

MAX_DEPTH = 32  # nesting of the config's own objects/lists (real configs: 4-5); deeper ones cannot be written back
MAX_LAYERS = 1024
MAX_CONTEXT = 100_000_000  # tokens (vLLM sizes its rotary tables by max_position_embeddings)
MAX_PARAMS = 10**13  # 10 trillion: five times the largest published model
_NOT_MODELLED = "vplan does not model it; open an issue with the model id"


@dataclass(frozen=True)
class Rule:
    """One config field: its JSON type, range and why the range is what it is."""

    keys: tuple[str, ...]  # the field and the aliases transformers also reads (first present wins)
    kind: str  # "int" | "number" | "bool" | "str" | "dict" | "list"
    lo: float | None = None
    hi: float | None = None
    why: str = ""
    required: bool = False
    lo_open: bool = False  # lo itself is not allowed (a number above lo)
    nullable: bool = True  # an explicit null means "not given"; False where a reader's default would not apply


def _r(keys, kind, lo=None, hi=None, why="", *, required=False, lo_open=False, nullable=True) -> Rule:
    return Rule((keys,) if isinstance(keys, str) else tuple(keys), kind, lo, hi, why, required, lo_open, nullable)


COMMON: tuple[Rule, ...] = (
    _r("model_type", "str", required=True, why="names the architecture"),
    _r("hidden_size", "int", 1, 131_072, "the widest published models use ~20k", required=True),
    _r("num_hidden_layers", "int", 1, MAX_LAYERS, "the deepest published models have ~200 layers", required=True),
    _r("num_attention_heads", "int", 1, 4096, "published models use up to ~128", required=True),
    _r("num_key_value_heads", "int", 1, 4096, "published models use 1-128"),
    _r("head_dim", "int", 1, 4096, "published models use 64-512"),
    _r("vocab_size", "int", 1, 4_194_304, "published tokenizers have up to ~260k tokens", required=True),
    _r("intermediate_size", "int", 1, 1_048_576, "published models use up to ~53k"),
    _r("max_position_embeddings", "int", 1, MAX_CONTEXT, "the longest published contexts are ~10M tokens"),
    _r("sliding_window", "int", 1, MAX_CONTEXT, "a window in tokens"),
    _r("tie_word_embeddings", "bool"), _r("attention_bias", "bool"), _r("mlp_bias", "bool"), _r("qkv_bias", "bool"),
    _r("bias", "bool"),
    _r("use_sliding_window", "bool"),
    _r("partial_rotary_factor", "number", 0, 1, "the share of head_dim that is rotated", lo_open=True, nullable=False),
    _r(("dtype", "torch_dtype"), "str"),
    _r("layer_types", "list"), _r("rope_scaling", "dict"), _r("rope_parameters", "dict"),
    _r("quantization_config", "dict"),
)
_EXPERTS = {
    "mixtral": ("num_local_experts", "num_experts"), "gpt_oss": ("num_local_experts", "num_experts"),
    "qwen3_moe": ("num_experts", "num_local_experts"),
    "deepseek_v2": ("n_routed_experts", "num_experts", "num_local_experts"),
    "deepseek_v3": ("n_routed_experts", "num_local_experts", "num_experts"),
    "llama4_text": ("num_local_experts",),
}
_MOE_SHARED = (
    _r("moe_intermediate_size", "int", 1, 1_048_576, "published models use up to ~53k"),
    _r("n_shared_experts", "int", 0, 1024, "published models use 0-2"),
)
_MLA = tuple(_r(k, "int", 1, 4096, "DeepSeek uses 64-192", required=True)
             for k in ("qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")) + (
    _r("kv_lora_rank", "int", 1, 65_536, "DeepSeek uses 512", required=True),
    _r("q_lora_rank", "int", 1, 65_536, "DeepSeek uses 1,536"),
    _r("first_k_dense_replace", "int", 0, MAX_LAYERS, "a layer count"),
    _r("moe_layer_freq", "int", 1, MAX_LAYERS, "every Nth layer is sparse"),
)


def _moe(mt: str, top_k: tuple[str, ...], width: str) -> tuple[Rule, ...]:
    """The expert fields of a family; ``width`` is the field its experts' width is read from (vLLM reads that one)."""
    return (_r(_EXPERTS[mt], "int", 1, 4096, "published models have up to ~384 experts", required=True),
            _r(top_k, "int", 1, 4096, "experts read per token", nullable=False),
            _r(width, "int", 1, 1_048_576, "the experts' width (published models use up to ~53k)", required=True),
            ) + _MOE_SHARED


RULES: dict[str, tuple[Rule, ...]] = {
    "llama": (), "mistral": (), "qwen2": (_r("max_window_layers", "int", 0, 2**31, "a layer count", nullable=False),),
    "qwen3": (_r("max_window_layers", "int", 0, 2**31, "a layer count", nullable=False),), "phi3": (), "gemma": (),
    "gemma2": (),
    "gemma3_text": (_r("sliding_window_pattern", "int", 1, MAX_LAYERS, "every Nth layer is global"),),
    "mixtral": _moe("mixtral", ("num_experts_per_tok",), "intermediate_size"),
    "gpt_oss": _moe("gpt_oss", ("experts_per_token", "num_experts_per_tok"), "intermediate_size"),
    "qwen3_moe": _moe("qwen3_moe", ("num_experts_per_tok",), "moe_intermediate_size") + (
        _r("decoder_sparse_step", "int", 1, MAX_LAYERS, "every Nth layer is sparse"), _r("mlp_only_layers", "list"),
        _r("shared_expert_intermediate_size", "int", 0, 1_048_576, "published models use up to ~53k")),
    "deepseek_v2": _moe("deepseek_v2", ("num_experts_per_tok",), "moe_intermediate_size") + _MLA,
    "deepseek_v3": _moe("deepseek_v3", ("num_experts_per_tok",), "moe_intermediate_size") + _MLA,
    "llama4_text": _moe("llama4_text", ("num_experts_per_tok",), "intermediate_size") + (
        _r("intermediate_size_mlp", "int", 1, 1_048_576, "Llama 4's dense layers use 16,384", required=True),
        _r("interleave_moe_layer_step", "int", 1, MAX_LAYERS, "every Nth layer is sparse", required=True),
        _r("no_rope_layer_interval", "int", 1, MAX_LAYERS, "every Nth layer has no rotary embedding", required=True),
        _r("attention_chunk_size", "int", 1, MAX_CONTEXT, "a chunk in tokens"),
        _r("moe_layers", "list"), _r("no_rope_layers", "list")),
}


# ---------------------------------------------------------------------------------------------- reading
def _show(v) -> str:
    try:
        s = json.dumps(v, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


class _Bad(Exception):
    def __init__(self, field: str, value, allowed: str, unsupported: bool = False):
        super().__init__(field)
        self.field, self.value, self.allowed, self.unsupported = field, value, allowed, unsupported


def _num(n: float) -> str:
    return f"{n:,}" if isinstance(n, int) or float(n).is_integer() and abs(n) >= 1000 else f"{n:g}"


def _check(rule: Rule, key: str, v) -> None:
    if rule.kind == "int":
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Bad(key, v, f"must be a whole number from {_num(rule.lo)} to {_num(rule.hi)} ({rule.why})")
    elif rule.kind == "number":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise _Bad(key, v, f"must be a number {'above' if rule.lo_open else 'from'} {_num(rule.lo)} "
                               f"{'and at most' if rule.lo_open else 'to'} {_num(rule.hi)} ({rule.why})")
    else:
        want = {"bool": bool, "str": str, "dict": dict, "list": list}[rule.kind]
        if not isinstance(v, want):
            words = {"bool": "true or false", "str": "a string", "dict": "an object", "list": "a list"}
            raise _Bad(key, v, f"must be {words[rule.kind]}")
        return
    low_bad = v <= rule.lo if rule.lo_open else v < rule.lo
    if low_bad or v > rule.hi:
        kind = "a whole number" if rule.kind == "int" else "a number"
        rng = f"above {_num(rule.lo)} and at most" if rule.lo_open else f"from {_num(rule.lo)} to"
        raise _Bad(key, v, f"must be {kind} {rng} {_num(rule.hi)} ({rule.why})")


def _apply(rules: tuple[Rule, ...], c: dict, optional_only: bool = False) -> None:
    for rule in rules:
        for k in rule.keys:
            if k in c and c[k] is None and not rule.nullable:
                raise _Bad(k, None, f"is null: give a value ({rule.why}) or remove the key")
        present = [k for k in rule.keys if c.get(k) is not None]
        if not present:
            if rule.required and not optional_only:
                raise _Bad(rule.keys[0], None, "is missing: vplan needs it to size the model (is this a causal "
                                               "language model's config.json?)")
            continue
        for k in present:  # every alias: one consumer reads one name, another the other
            _check(rule, k, c[k])


def _walk(v, path: str, depth: int) -> None:
    """No value deeper than MAX_DEPTH, no NaN or infinity anywhere (a plan embeds the config as JSON)."""
    if depth > MAX_DEPTH:
        raise _Bad(path, "...", f"nests deeper than {MAX_DEPTH} levels (real configs nest 4-5)")
    if isinstance(v, float) and not math.isfinite(v):
        raise _Bad(path, v, "must be a finite number (NaN and Infinity are not JSON)")
    if isinstance(v, dict):
        for k, x in v.items():
            _walk(x, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _walk(x, f"{path}[{i}]", depth + 1)


def _get(c: dict, keys: tuple[str, ...], default=None):
    return next((c[k] for k in keys if c.get(k) is not None), default)


# ---------------------------------------------------------------------------------------------- cross-field
def _heads(mt: str, c: dict) -> None:
    h, H = c["hidden_size"], c["num_attention_heads"]
    kvh = c.get("num_key_value_heads")
    if kvh is not None and (kvh > H or H % kvh):
        raise _Bad("num_key_value_heads", kvh, f"must divide num_attention_heads = {H} (each KV head serves "
                                               "the same number of query heads)")
    if c.get("head_dim") is None and mt not in ("deepseek_v2", "deepseek_v3") and H > h:
        raise _Bad("num_attention_heads", H, f"must be at most hidden_size = {h} when head_dim is not given "
                                             "(head_dim = hidden_size / heads)")


def _layer_types(mt: str, c: dict) -> None:
    lt, L = c.get("layer_types"), c["num_hidden_layers"]
    if lt is None:
        return
    if len(lt) != L:
        raise _Bad("layer_types", lt, f"must list one type per layer: {L} (num_hidden_layers), not {len(lt)}")
    kinds = ("full_attention", "chunked_attention") if mt == "llama4_text" else ("full_attention", "sliding_attention")
    for i, t in enumerate(lt):
        if t not in kinds:
            raise _Bad(f"layer_types[{i}]", t, f"is not {' or '.join(kinds)}; {_NOT_MODELLED}", unsupported=True)
    if mt == "llama4_text":  # Llama4TextConfig: per-layer lists, when given, index every layer
        for name, ok in (("moe_layers", lambda x: 0 <= x < L), ("no_rope_layers", lambda x: x in (0, 1))):
            for i, x in enumerate(c.get(name) or []):
                if isinstance(x, bool) or not isinstance(x, int) or not ok(x):
                    raise _Bad(f"{name}[{i}]", x, "must be a layer index from 0 to "
                               f"{L - 1}" if name == "moe_layers" else "must be 0 or 1 (1: the layer uses rotary)")
        if c.get("no_rope_layers") and len(c["no_rope_layers"]) != L:
            raise _Bad("no_rope_layers", c["no_rope_layers"], f"must list one flag per layer: {L}")


def _dense_mlp(mt: str, c: dict) -> None:
    moe_layers_possible = mt in _EXPERTS
    dense_needed = not moe_layers_possible or (mt in ("deepseek_v2", "deepseek_v3") and (c.get(
        "first_k_dense_replace") or 0) > 0) or (mt == "qwen3_moe" and (c.get("mlp_only_layers") or c.get(
            "decoder_sparse_step", 1) not in (None, 1)))
    if dense_needed and c.get("intermediate_size") is None:
        raise _Bad("intermediate_size", None, "is missing; the dense MLP layers need it")


def _experts(mt: str, c: dict) -> None:
    if mt not in _EXPERTS:
        return
    E = min(c[k] for k in _EXPERTS[mt] if c.get(k) is not None)
    for key in ("experts_per_token", "num_experts_per_tok") if mt == "gpt_oss" else ("num_experts_per_tok",):
        if c.get(key) is not None and c[key] > E:
            raise _Bad(key, c[key], f"must be at most the number of experts, {E} (a token cannot be routed to more "
                                    "experts than exist)")
    L = c["num_hidden_layers"]
    for i, x in enumerate((c.get("mlp_only_layers") or []) if mt == "qwen3_moe" else []):  # only Qwen3-MoE reads it
        if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < L:
            raise _Bad(f"mlp_only_layers[{i}]", x, f"must be a layer index from 0 to {L - 1}")


ROPE = (  # rope_scaling / rope_parameters: what the rotary tables are sized from (vLLM: rows x rotary dim)
    _r("factor", "number", 0, 1024, "published scaling factors are 2-64", lo_open=True),
    _r("original_max_position_embeddings", "int", 1, MAX_CONTEXT, "a context length in tokens"),
    _r("partial_rotary_factor", "number", 0, 1, "the share of head_dim that is rotated", lo_open=True),
    _r(("rope_type", "type"), "str"),
)


def _rope(mt: str, c: dict) -> None:
    for name in ("rope_scaling", "rope_parameters"):
        rp = c.get(name)
        if not isinstance(rp, dict):
            continue
        for rule in ROPE:
            key = next((k for k in rule.keys if k in rp), None)
            if key is None:
                continue
            if rp[key] is None and rule.kind != "str":
                raise _Bad(f"{name}.{key}", None, f"is null: give a number ({rule.why}) or remove the key")
            if rp[key] is not None:
                _check(rule, f"{name}.{key}", rp[key])


QUANT_METHODS = ("gptq", "awq", "bitsandbytes", "fp8", "mxfp4")


def _quant(mt: str, c: dict) -> None:
    q = c.get("quantization_config")
    if q is None:
        return
    method = q.get("quant_method")
    if not isinstance(method, str) or not method:
        raise _Bad("quantization_config.quant_method", method, "must name the quantization method (a string)")
    m = method.lower()
    if m not in QUANT_METHODS:
        raise _Bad("quantization_config.quant_method", method, f"is not one of {', '.join(QUANT_METHODS)}; "
                   f"{_NOT_MODELLED}", unsupported=True)
    if m in ("gptq", "awq"):
        bits = _get(q, ("bits", "w_bit"), 4)
        allowed = (4, 8) if m == "gptq" else (4,)
        if isinstance(bits, bool) or bits not in allowed:
            raise _Bad("quantization_config.bits", bits, f"vplan models {m} with {' or '.join(map(str, allowed))} "
                       f"bits only; {_NOT_MODELLED}", unsupported=isinstance(bits, int) and not isinstance(bits, bool))
        g = _get(q, ("group_size", "q_group_size"), 128)
        if isinstance(g, bool) or not isinstance(g, int) or not (g == -1 or 1 <= g <= 1_048_576):
            raise _Bad("quantization_config.group_size", g, "must be -1 (one group per row) or a group size from 1 "
                                                            "to 1,048,576")
    if m == "bitsandbytes":
        for k in ("load_in_4bit", "load_in_8bit"):
            if q.get(k) is not None and not isinstance(q[k], bool):
                raise _Bad(f"quantization_config.{k}", q[k], "must be true or false")


def _size_bound(mt: str, c: dict) -> None:
    """An upper bound of the parameters (embeddings, attention, MLP or every expert): a typo of a few digits
    (hidden_size 40960000) is caught here, before the planner sizes a model no cluster could hold."""
    h, L, V, H = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"], c["num_attention_heads"]
    hd = c.get("head_dim") or max(1, h // H)
    if mt in ("deepseek_v2", "deepseek_v3"):
        hd = max(hd, c["qk_nope_head_dim"] + c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"])
    width = c.get("intermediate_size") or 0
    if mt in _EXPERTS:
        mi = c.get("moe_intermediate_size") or c.get("intermediate_size") or 0
        width = max(width, mi * (_get(c, _EXPERTS[mt]) + (c.get("n_shared_experts") or 0)))
    bound = 2 * V * h + L * (4 * H * hd * h + 3 * h * width + 4 * h)
    if bound > MAX_PARAMS:
        raise _Bad("hidden_size", h, f"with the other sizes describes ~{bound / 1e12:,.0f} trillion parameters, "
                                     f"more than {MAX_PARAMS // 10**12} trillion (five times the largest published "
                                     "model): check num_hidden_layers, hidden_size, intermediate_size and the expert "
                                     "counts")


CHECKS: tuple[Callable[[str, dict], None], ...] = (_heads, _layer_types, _dense_mlp, _experts, _rope, _quant,
                                                    _size_bound)


def validate_config(config, model_id: str, architecture: str | None = None, field_prefix: str = "") -> None:
    """Raise a one-line MalformedConfigError / UnsupportedModelError at the first field the planner cannot use.

    ``architecture``: the model_type to apply rules for (default: the config's own); ``field_prefix``: where
    ``config`` sits in config.json (``text_config.`` for a multimodal model's text model), for the error line."""
    where = f"config.json of {model_id}"
    if not isinstance(config, dict):
        raise MalformedConfigError(f"{where} is not a JSON object; fix or re-download it")
    try:
        _walk(config, "", 0)
        mt = architecture or config.get("model_type")
        if not isinstance(mt, str) or not mt:
            raise _Bad("model_type", mt, "must name the architecture (a string such as \"llama\")")
        mt = mt.lower()
        if mt in RULES:
            _apply(COMMON + RULES[mt], config)
            for check in CHECKS:
                check(mt, config)
        else:  # sized from checkpoint metadata: the standard fields it reads, where present
            _apply(COMMON, config, optional_only=True)
            _quant_fields_if_any(config)
    except _Bad as e:
        raise _line(e, model_id, field_prefix) from None


def _line(e: "_Bad", model_id: str, field_prefix: str = "") -> Exception:
    """The one-line error of a violation: the field (where it sits in config.json), its value, what is allowed."""
    err = UnsupportedModelError if e.unsupported else MalformedConfigError
    value = "" if e.value is None else f" = {_show(e.value)}:"
    field = field_prefix + e.field
    field = field if len(field) <= 60 else field[:57] + "..."
    fix = "" if e.unsupported else "; fix config.json"
    return err(f"config.json of {model_id}: {field}{value} {e.allowed}{fix}")


def _quant_fields_if_any(c: dict) -> None:
    if isinstance(c.get("quantization_config"), dict):
        _quant("", c)


_VISION_WHY = "a size of the vision tower"
VISION: tuple[Rule, ...] = tuple(
    _r(k, "int", 1, 1_048_576, _VISION_WHY, nullable=False) for k in (
        "hidden_size", "intermediate_size", "patch_size", "num_channels", "in_channels", "image_size",
        "num_attention_heads", "num_heads", "temporal_patch_size", "spatial_merge_size", "out_hidden_size",
        "num_position_embeddings")) + (
    _r(("num_hidden_layers", "depth"), "int", 1, MAX_LAYERS, "the vision tower's layers", nullable=False),
    _r("deepstack_visual_indexes", "list"))
PROJECTOR: tuple[Rule, ...] = (_r("spatial_merge_size", "int", 1, 1024, "patches merged per side", nullable=False),)


def validate_vision(vision: dict, top: dict, model_id: str) -> None:
    """The resolved vision config (and the top-level projector fields) of a multimodal model: every size the vision
    tower's closed forms (model/vision.py) read is a positive whole number in range, so its parameters are sized,
    never negative or fractional. One line, as validate_config (fields named vision_config.<field>)."""
    try:
        _apply(VISION, vision, optional_only=True)
        if vision.get("image_size") and vision.get("patch_size", 0) > vision["image_size"]:
            raise _Bad("patch_size", vision["patch_size"], f"is larger than image_size ({vision['image_size']}): no "
                                                           "patch fits an image")
        for i, x in enumerate(vision.get("deepstack_visual_indexes") or []):
            if isinstance(x, bool) or not isinstance(x, int) or not 0 <= x < MAX_LAYERS:
                raise _Bad(f"deepstack_visual_indexes[{i}]", x, f"must be a layer index from 0 to {MAX_LAYERS - 1}")
    except _Bad as e:
        raise _line(e, model_id, "vision_config.") from None
    try:
        _apply(PROJECTOR, top, optional_only=True)
        layers = top.get("vision_feature_layer")
        if "vision_feature_layer" in top and not ((isinstance(layers, int) and not isinstance(layers, bool)) or (
                isinstance(layers, list) and 0 < len(layers) <= MAX_LAYERS
                and all(isinstance(x, int) and not isinstance(x, bool) for x in layers))):
            raise _Bad("vision_feature_layer", layers, "must be a layer index or a non-empty list of them")
    except _Bad as e:
        raise _line(e, model_id) from None
