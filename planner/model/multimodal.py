"""Multimodal checkpoints from config.json alone: the text model sized from ``text_config``, the vision tower and
projector where the runtime loads them, and ``lm_head`` tied the way ``from_pretrained`` will tie it.

transformers builds a composite config from classes whose defaults fill every key a config.json leaves out; the
planner never imports transformers, so :func:`resolve` does the same from the ``config_defaults`` behaviour
(model/defaults.py, checked against the installed config classes) and the config classes' derived fields
(Gemma 3 layer types, Llama 4 no-rope / MoE / chunked layers, Qwen2.5-VL's flat Hub layout). Which class the
runtime loads is the ``causal_lm_multimodal`` behaviour: AutoModelForCausalLM where transformers maps the family
(gemma3: the whole model; llama4: ``Llama4ForCausalLM``, the text model only, its vision weights dropped as
unexpected keys), else AutoModelForImageTextToText (the whole model). runtime/transformers/load.py and the
simulator load that same class.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from vplan.planner.errors import MalformedConfigError, UnsupportedModelError, UsageError
from vplan.planner.model.vision import gemma3_projector, mistral3_projector, pixtral, qwen2_5_vl, qwen3_vl, siglip
from vplan.planner.model.behaviours import behaviour
from vplan.planner.model.spec import Block
from vplan.planner.model.validate import validate_config, validate_vision
from vplan.planner.source.checkpoint import CheckpointSummary

FAMILIES = ("gemma3", "mistral3", "llama4", "qwen2_5_vl", "qwen3_vl")
# text model_type -> the text layout of model/architectures.py that builds the same modules
TEXT_LAYOUT = {"gemma3_text": "gemma3_text", "mistral": "mistral", "llama4_text": "llama4_text",
               "qwen2_5_vl_text": "qwen2", "qwen3_vl_text": "qwen3"}
# Mistral3Config defaults tie_word_embeddings to True (for BC), but Mistral 3 checkpoints store lm_head.weight and
# from_pretrained leaves a stored lm_head untied: from config.json alone, count the lm_head
TIE_DEFAULT_NOT_TRUSTED = ("mistral3",)
# where each family's modules live in the loaded class, and how checkpoint tensor names map onto them
# (conversion_mapping.py renames the legacy Hub layout at load: language_model.model.X -> model.language_model.X)
_WHOLE = {"text": "model.language_model", "vision": "model.vision_tower", "projector": "model.multi_modal_projector"}
LAYOUT = {
    "gemma3": _WHOLE, "mistral3": _WHOLE,
    "qwen2_5_vl": {"text": "model.language_model", "vision": "model.visual", "projector": None},
    "qwen3_vl": {"text": "model.language_model", "vision": "model.visual", "projector": None},
    "llama4": {"text": "model", "vision": None, "projector": None},
}
_CHECKPOINT_PREFIXES = {  # checkpoint block prefix -> module block prefix (first match wins)
    "gemma3": (("language_model.lm_head", "lm_head"), ("language_model.model.", "model.language_model."),
               ("vision_tower", "model.vision_tower"), ("multi_modal_projector", "model.multi_modal_projector"),
               ("model.vision_tower", "model.vision_tower"),
               ("model.multi_modal_projector", "model.multi_modal_projector")),
    "qwen2_5_vl": (("visual", "model.visual"), ("model.language_model.", "model.language_model."),
                   ("model.visual", "model.visual"), ("model.", "model.language_model.")),
    "qwen3_vl": (("model.visual", "model.visual"),),
    "llama4": (("language_model.lm_head", "lm_head"), ("language_model.model.", "model.")),
}
_CHECKPOINT_PREFIXES["mistral3"] = _CHECKPOINT_PREFIXES["gemma3"]


@dataclass(frozen=True)
class Composite:
    family: str
    text: dict  # the text model's config, class defaults filled in and derived fields set
    text_layout: str  # which layout of model/architectures.py builds it
    vision: dict  # the vision config ({} when the loaded class has no vision tower)
    top: dict  # the family's own keys, defaults filled in
    loads: str  # "whole" (text + vision + projector) or "text"
    text_prefix: str
    tied: bool  # lm_head shares the input embedding as loaded
    notes: tuple[str, ...]


def resolve(model_id: str, config: dict, checkpoint: CheckpointSummary | None, transformers: str) -> Composite:
    family = str(config.get("model_type"))
    defaults = behaviour("config_defaults", transformers)
    top = {**defaults["family"][family], **{k: config[k] for k in defaults["family"][family] if k in config}}
    text = _sub(model_id, family, "text_config", _raw_text(family, config), defaults)
    mapped = behaviour("causal_lm_multimodal", transformers)[family]
    loads = "text" if mapped == "text" else "whole"
    vis = _sub(model_id, family, "vision_config", config.get("vision_config"), defaults) if loads == "whole" else {}
    validate_config(text, model_id, architecture=TEXT_LAYOUT[text["model_type"]], field_prefix="text_config.")
    _derive(model_id, text, transformers)
    if loads == "whole":
        validate_vision(vis, top, model_id)
    tied, notes = loaded_tie(config, _lm_head_stored(family, checkpoint), transformers, text=text, top=top)
    if loads == "whole":
        notes += (f"{family}: planned for text prompts; the vision tower and projector are loaded (weights counted) "
                  "but run only on images, whose soft tokens add to the prompt and whose tower activations at "
                  "prefill vplan does not size",)
    else:
        notes += (f"{family}: AutoModelForCausalLM loads the text model only (vision weights in the checkpoint are "
                  "not loaded): text prompts only",)
    return Composite(family, text, TEXT_LAYOUT[text["model_type"]], vis, top, loads, LAYOUT[family]["text"], tied,
                     notes)


def resolve_text(model_id: str, config: dict, transformers: str) -> dict:
    """A text config these classes define on its own (``llama4_text``, as Llama4ForCausalLM saves it), resolved."""
    defaults = behaviour("config_defaults", transformers)
    mt = str(config.get("model_type"))
    text = {**defaults["class"][mt], **config, "model_type": mt}
    validate_config(text, model_id)
    _derive(model_id, text, transformers)
    return text


def _raw_text(family: str, config: dict):
    raw = config.get("text_config")
    if raw is None and family == "qwen2_5_vl":  # flat Hub layout: the text keys sit at the top level
        flat = {k: v for k, v in config.items() if k not in ("model_type", "vision_config", "quantization_config")}
        return {**flat, "model_type": "qwen2_5_vl_text"}
    return raw


def _sub(model_id: str, family: str, key: str, raw, defaults: dict) -> dict:
    mt, init_kwargs = defaults["subconfig"][family][key]
    if raw is None:
        return {**defaults["class"][mt], **init_kwargs, "model_type": mt}
    if not isinstance(raw, dict):
        raise MalformedConfigError(f"config.json of {model_id}: {key} is not a JSON object; fix the config")
    mt = str(raw.get("model_type") or mt)
    if mt == "qwen2_5_vl":  # Qwen2_5_VLConfig.__post_init__ renames this legacy vision model_type
        mt = "qwen2_5_vl_vision"
    if mt not in defaults["class"] or (key == "text_config" and mt not in TEXT_LAYOUT):
        what = "its KV cache and activations" if key == "text_config" else "its vision tower"
        raise UnsupportedModelError(f"{model_id}: {family} with a {key} of model_type {mt!r} is not modelled by vplan "
                                    f"({what} cannot be derived); open an issue with the config")
    aliases = defaults["aliases"].get(mt, {})
    return {**defaults["class"][mt], **{aliases.get(k, k): v for k, v in raw.items()}, "model_type": mt}


def _derive(model_id: str, t: dict, transformers: str) -> None:
    """The derived fields the text config class sets in __post_init__ (in place), on a validated text config."""
    mt = t["model_type"]  # validated by the caller (validate_config with the text family's rules)
    t["num_key_value_heads"] = t.get("num_key_value_heads") or t["num_attention_heads"]
    L = t["num_hidden_layers"]
    if mt == "gemma3_text":
        if t.get("use_bidirectional_attention"):
            raise UnsupportedModelError(f"{model_id}: use_bidirectional_attention (an embedding model) is not a "
                                        "generate() model vplan plans")
        pat = t.get("sliding_window_pattern") or behaviour("config_defaults", transformers)["class"][mt][
            "sliding_window_pattern"]
        t["layer_types"] = t.get("layer_types") or [
            "full_attention" if (i + 1) % pat == 0 else "sliding_attention" for i in range(L)]
    if mt == "llama4_text":
        every = t["no_rope_layer_interval"]
        t["no_rope_layers"] = t.get("no_rope_layers") or [int((i + 1) % every != 0) for i in range(L)]
        step = t["interleave_moe_layer_step"]
        t["moe_layers"] = list(range(step - 1, L, step)) if t.get("moe_layers") is None else list(t["moe_layers"])
        if not t.get("layer_types"):
            chunk = t.get("attention_chunk_size")
            if chunk is None and not behaviour("llama4_chunked_needs_chunk_size", transformers):
                raise UsageError(f"{model_id}: transformers {transformers} makes the rope layers of this Llama 4 config "
                                 "chunked without attention_chunk_size, and its generate() fails; plan with "
                                 "--transformers 5.24 (and run that version)")
            t["layer_types"] = ["chunked_attention" if r and chunk is not None else "full_attention"
                                for r in t["no_rope_layers"]]
    if mt == "qwen2_5_vl_text":
        if behaviour("qwen_sliding_only_with_use_sliding_window", transformers) and not t.get("use_sliding_window"):
            t["sliding_window"] = None
        mwl = t["max_window_layers"]
        t["layer_types"] = t.get("layer_types") or [
            "sliding_attention" if t["sliding_window"] is not None and i >= mwl else "full_attention" for i in range(L)]


def _lm_head_stored(family: str, checkpoint: CheckpointSummary | None) -> bool | None:
    if checkpoint is None or not checkpoint.bytes_by_block:
        return None
    return "lm_head" in module_bytes_by_block(family, checkpoint)


def loaded_tie(config: dict, lm_head_stored: bool | None, transformers: str, *, text: dict | None = None,
               top: dict | None = None) -> tuple[bool, tuple[str, ...]]:
    """Whether lm_head shares the input embedding once from_pretrained has loaded the checkpoint: the config's flag
    (read where the loaded class reads it), untied wherever the checkpoint stores lm_head (or, from config.json alone,
    where the family's default is known not to hold for its checkpoints)."""
    family = str(config.get("model_type"))
    defaults = behaviour("config_defaults", transformers)
    if top is None:
        top = {**defaults["family"][family], **{k: config[k] for k in defaults["family"][family] if k in config}}
    if text is None:
        text = _sub("config", family, "text_config", _raw_text(family, config), defaults)
    if behaviour("causal_lm_multimodal", transformers)[family] == "text":
        flag = bool(text.get("tie_word_embeddings"))  # the text model is itself the loaded PreTrainedModel
    else:
        flag = bool(top["tie_word_embeddings"]) or (
            family in behaviour("text_tie_forwarded", transformers) and bool(text.get("tie_word_embeddings")))
    if not flag:
        return False, ()
    if lm_head_stored is not None and behaviour("lm_head_tied_only_if_not_stored", transformers):
        return not lm_head_stored, ()
    if family in TIE_DEFAULT_NOT_TRUSTED and "tie_word_embeddings" not in config:
        return False, (f"{family}: lm_head counted untied: the config class defaults tie_word_embeddings to true, but "
                       f"{family} checkpoints store lm_head.weight, which from_pretrained keeps separate",)
    return True, ()


def with_loaded_tie(config: dict, transformers: str) -> dict:
    """``config`` with the tie written where the loaded class reads it, so that ``from_config`` (the simulator, the
    meta-device truth) ties exactly as ``from_pretrained`` of its checkpoint does."""
    family = str(config.get("model_type"))
    if family not in FAMILIES:
        return config
    tied, _ = loaded_tie(config, None, transformers)
    out = dict(config)
    if behaviour("causal_lm_multimodal", transformers)[family] == "text":
        out["text_config"] = {**(config.get("text_config") or {}), "tie_word_embeddings": tied}
    else:
        out["tie_word_embeddings"] = tied
    return out


def vision_blocks(c: Composite) -> list[Block]:
    """The blocks ahead of the text model in the loaded class (its module order): vision tower, projector."""
    if c.loads != "whole":
        return []
    names = LAYOUT[c.family]
    h = c.text["hidden_size"]
    if c.family == "gemma3":
        return [siglip(c.vision, names["vision"]), gemma3_projector(c.vision, h, names["projector"])]
    if c.family == "mistral3":
        return [pixtral(c.vision, names["vision"]),
                mistral3_projector(c.vision, c.top, h, names["projector"])]
    if c.family == "qwen2_5_vl":
        return [qwen2_5_vl(c.vision, names["vision"])]
    return [qwen3_vl(c.vision, names["vision"])]


def module_bytes_by_block(family: str, checkpoint: CheckpointSummary) -> dict[str, int]:
    """A checkpoint's stored bytes keyed by the blocks of the loaded class (tensor names renamed as the loader
    renames them; tensors the loaded class drops, such as Llama 4's vision weights under AutoModelForCausalLM, left
    out)."""
    rules = _CHECKPOINT_PREFIXES[family]
    out: dict[str, int] = {}
    for name, b in checkpoint.bytes_by_block.items():
        for old, new in rules:
            if name == old or name.startswith(old if old.endswith(".") else old + "."):
                name = new + name[len(old):] if old.endswith(".") else new
                break
        else:
            if family == "llama4":  # vision_model / multi_modal_projector: unexpected keys, not loaded
                continue
        out[name] = out.get(name, 0) + b
    return out


def loaded_checkpoint(family: str, checkpoint: CheckpointSummary | None) -> CheckpointSummary | None:
    """The checkpoint summary with its per-block bytes keyed by the loaded class's blocks."""
    if checkpoint is None or not checkpoint.bytes_by_block:
        return checkpoint
    return replace(checkpoint, bytes_by_block=module_bytes_by_block(family, checkpoint))
