"""What transformers does that the memory model depends on, by version, each entry with its evidence.

A plan is computed for one transformers version (``--transformers``, default the newest modelled): the model
reads every version-dependent fact through :func:`behaviour`, plans record the modelled range in
``requirements``, and preflight refuses a node whose transformers is outside it. A version that is not in
``MODELLED`` is refused with the list of those that are: a new release must be read and added here (with its
evidence) before vplan plans for it. tests/model/test_behaviours.py reads every entry off the installed
transformers, and CI runs it under each modelled release, so a release that changes a modelled behaviour fails a
test instead of shifting numbers. docs/transformers-versions.md is generated from this table
(``python -m vplan.planner.model.behaviours``).

Evidence is ``file:line`` in 5.23.0 / 5.24.0 (paths under ``transformers/``), the symbol and what it says.
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.errors import UsageError
from vplan.planner.model.defaults import CONFIG_DEFAULTS

MODELLED = ("5.23", "5.24")  # major.minor; every patch release of a modelled minor behaves the same
DEFAULT_TRANSFORMERS = MODELLED[-1]


@dataclass(frozen=True)
class Behaviour:
    id: str
    what: str
    values: dict[str, object]  # modelled minor version -> value
    evidence: str  # file, symbol and the code line(s) that decide it
    used_by: str  # where the planner reads it


def _same(value) -> dict[str, object]:
    return {v: value for v in MODELLED}


BEHAVIOURS: dict[str, Behaviour] = {b.id: b for b in (
    Behaviour(
        "deepseek_router_fp32",
        "DeepSeek-V2/V3 keep the MoE router weight (mlp.gate.weight, experts x hidden) in fp32 whatever dtype is asked",
        {"5.23": False, "5.24": True},
        "models/deepseek_v2/modeling_deepseek_v2.py:483 and models/deepseek_v3/modeling_deepseek_v3.py:551 "
        "(5.24), PreTrainedModel subclass: `_keep_in_fp32_modules_strict = [\"gate.weight\"]` (V3 also "
        "\"e_score_correction_bias\"), router created with dtype=torch.float32 (:92 / :126); 5.23 has only V3's "
        "e_score_correction_bias (:550) and creates the router in the default dtype",
        "model/architectures.py: Block.fp32_params of every DeepSeek MoE layer"),
    Behaviour(
        "deepseek_v3_e_score_bias_fp32",
        "DeepSeek-V3 keeps gate.e_score_correction_bias (a buffer of n_routed_experts) in fp32 after from_pretrained",
        _same(True),
        "models/deepseek_v3/modeling_deepseek_v3.py:550 (5.23) / :551 (5.24) DeepseekV3PreTrainedModel "
        "`_keep_in_fp32_modules_strict` lists \"e_score_correction_bias\"; applied by modeling_utils.py "
        "PreTrainedModel._get_dtype_plan (:3846 / :3855) for bf16 and fp16 loads",
        "model/architectures.py: Block.fixed_buffer_bytes of every DeepSeek-V3 MoE layer"),
    Behaviour(
        "keep_in_fp32_if_fp16",
        "modules kept in fp32 only when loading in fp16 (_keep_in_fp32_modules), per modelled architecture",
        _same({"gpt_oss": ("post_attention_layernorm", "input_layernorm", "norm")}),
        "models/gpt_oss/modeling_gpt_oss.py:389 (5.23) / :390 (5.24) GptOssPreTrainedModel `_keep_in_fp32_modules = "
        "[\"post_attention_layernorm\", \"input_layernorm\", \"norm\"]`; every other modelled architecture lists none; "
        "modeling_utils.py _get_dtype_plan upcasts them for torch.float16 only",
        "model/architectures.py: Block.fp32_if_fp16 (memory/weights.py adds 2 B per element under fp16)"),
    Behaviour(
        "eager_only",
        "architectures with no sdpa path: the default attention is eager and asking for sdpa raises (why)",
        _same({"gpt_oss": "attention sinks", "gemma2": "attention logit soft-capping"}),
        "models/gpt_oss/modeling_gpt_oss.py:379 / :380 GptOssPreTrainedModel `_supports_sdpa = False`; "
        "models/gemma2/modeling_gemma2.py:352 / :353 Gemma2PreTrainedModel `_supports_sdpa = False  # sdpa does not "
        "support softcapping`",
        "memory/activations.py (eager score terms whatever is asked); runtime/sim/simulate.py; benchmarks/accuracy.py"),
    Behaviour(
        "mxfp4_requirements",
        "MXFP4 (gpt-oss) stays MXFP4 only with `kernels` in [min, max), triton >= triton_min on CUDA and compute "
        "capability >= min_cc; otherwise a pre-quantized checkpoint is dequantized to bf16 while loading",
        _same({"kernels": ((0, 18, 2), (0, 19, 0)), "triton_min": (3, 4, 0), "min_cc": (7, 5)}),
        "utils/import_utils.py:177-178 `KERNELS_MIN_VERSION = \"0.18.2\"`, `KERNELS_MAX_VERSION = \"0.19.0\"` (both); "
        "quantizers/quantizer_mxfp4.py:82-83 Mxfp4HfQuantizer.validate_environment `compute_capability >= (7, 5)`, "
        "`is_triton_available(\"3.4.0\")`; PyPI's newest kernels is 0.17.2 (none in range)",
        "search/precision.py (policy, conditions), search/transformers.py (requirements), cli/options.py "
        "(source/environment.py detection)"),
    Behaviour(
        "fp8_min_cc",
        "fine-grained FP8 weights stay FP8 only on CUDA compute capability >= this; a pre-quantized checkpoint is "
        "dequantized elsewhere and on-the-fly FP8 raises",
        _same((8, 9)),
        "quantizers/quantizer_finegrained_fp8.py:49-51 FineGrainedFP8HfQuantizer.validate_environment "
        "`if (major < 8) or (major == 8 and minor < 9):` -> dequantize",
        "search/precision.py (fp8 allowed on a GPU)"),
    Behaviour(
        "fp8_dequant_unscaled_take_load_dtype",
        "a fine-grained FP8 checkpoint loaded dequantized: tensors stored without a scale (embeddings, lm_head, "
        "norms, unquantized Linears) take the load dtype (True) or keep their stored dtype (False)",
        {"5.23": False, "5.24": True},
        "integrations/finegrained_fp8.py:1201 (5.23) Fp8Dequantize.convert `return {target_key: quantized}`; "
        ":1202 (5.24) `return {target_key: quantized if output_dtype is None else quantized.to(output_dtype)}`",
        "memory/weights.py (fp32 plans of FP8 checkpoints)"),
    Behaviour(
        "quantizer_converts",
        "weight classes each on-load quantizer converts (model/spec.py WEIGHT_CLASSES); the rest stay in the compute "
        "dtype: bitsandbytes replaces exactly nn.Linear (not lm_head, tied weights, _keep_in_fp32_modules, fused "
        "3-D experts, bare router Parameters or nn.Linear subclasses), fine-grained FP8 also modules named *.experts",
        _same({"bitsandbytes": ("linear",), "fp8": ("linear", "experts"), "mxfp4": ("experts",)}),
        "integrations/bitsandbytes.py:189 replace_with_bnb_linear `isinstance(module, Conv1D) or type(module) is "
        "nn.Linear`; quantizers/base.py get_keys_to_not_convert (tied, last module, output embedding); "
        "integrations/finegrained_fp8.py:962 `if module_name.endswith(\".experts\")` -> FP8Experts; "
        "integrations/mxfp4.py replace_with_mxfp4_linear (GptOssExperts only)",
        "memory/weights.py (int8/nf4/fp8/mxfp4 bytes per block)"),
    Behaviour(
        "fp8_rejects_biased_experts",
        "FP8Experts refuses experts with biases (gpt-oss): no fp8 plan for them",
        _same(True),
        "integrations/finegrained_fp8.py FP8Experts.__init__ `assert not has_bias, \"FP8Experts does not support "
        "bias\"` (both)",
        "search/precision.py, memory/weights.py"),
    Behaviour(
        "cache_layer_of_type",
        "generate()'s DynamicCache layer class per layer type: 'sliding' = DynamicSlidingWindowLayer (window = "
        "sliding_window, or attention_chunk_size for chunked layers), 'full' = DynamicLayer",
        _same({"full_attention": "full", "sliding_attention": "sliding", "chunked_attention": "sliding"}),
        "cache_utils.py:1419-1423 (5.23) / :1469-1473 (5.24) `DYNAMIC_LAYER_TYPE_MAPPING`, `\"chunked_attention\": "
        "DynamicSlidingWindowLayer`; get_layer_types_and_kwargs passes attention_chunk_size as the window",
        "model/architectures.py (AttentionLayer kinds), memory/kv.py"),
    Behaviour(
        "sliding_cache_holds_prompt_after_prefill",
        "a DynamicSlidingWindowLayer keeps a view of the last window - 1 tokens of the tensor it concatenated: "
        "right after a prefill of P tokens its storage is all P tokens, after a decode step window tokens",
        _same(True),
        "cache_utils.py:246 DynamicSlidingWindowLayer.update `self.keys = full_key_states[:, :, -self.sliding_window"
        " + 1 :, :]` (a slice of the torch.cat result, both)",
        "memory/kv.py kv_tokens_held"),
    Behaviour(
        "qwen_sliding_only_with_use_sliding_window",
        "Qwen2 / Qwen2.5-VL text configs null sliding_window unless use_sliding_window",
        _same(True),
        "models/qwen2/configuration_qwen2.py:84 (5.23) / :83 (5.24) `self.sliding_window = self.sliding_window if "
        "self.use_sliding_window else None`; models/qwen2_5_vl/configuration_qwen2_5_vl.py Qwen2_5_VLTextConfig."
        "__post_init__ (same line)",
        "model/architectures.py (attention kinds)"),
    Behaviour(
        "llama4_chunked_needs_chunk_size",
        "Llama 4 layers with rope are 'chunked_attention' only when attention_chunk_size is set (True); in 5.23 "
        "they are chunked even without it, and generate() then fails (TypeError)",
        {"5.23": False, "5.24": True},
        "models/llama4/configuration_llama4.py:190 (5.23) `\"chunked_attention\" if no_rope else "
        "\"full_attention\"`; :189 (5.24) `... if no_rope and self.attention_chunk_size is not None else ...`",
        "model/multimodal.py (Llama 4 layer types)"),
    Behaviour(
        "llama4_masks_for_present_types_only",
        "Llama4TextModel builds an attention mask only for the layer types present (True); 5.23 always builds the "
        "full and the chunked mask",
        {"5.23": False, "5.24": True},
        "models/llama4/modeling_llama4.py Llama4TextModel.forward: 5.23 `causal_mask_mapping = {\"full_attention\": "
        "create_causal_mask(...), \"chunked_attention\": create_chunked_causal_mask(...)}`; 5.24:546 `for layer_type "
        "in set(self.config.layer_types):`",
        "memory/activations.py (Llama 4 masks)"),
    Behaviour(
        "causal_lm_multimodal",
        "what AutoModelForCausalLM loads for a multimodal config: 'full' (the whole model), 'text' (its text model "
        "only), or None (not mapped: the runtime loads AutoModelForImageTextToText)",
        _same({"gemma3": "full", "llama4": "text", "mistral3": None, "qwen2_5_vl": None, "qwen3_vl": None}),
        "models/auto/modeling_auto.py MODEL_FOR_CAUSAL_LM_MAPPING_NAMES: :818 / :840 `(\"gemma3\", "
        "\"Gemma3ForConditionalGeneration\")`, :870 / :894 `(\"llama4\", \"Llama4ForCausalLM\")` (auto_factory swaps "
        "the config for its text_config); mistral3 / qwen2_5_vl / qwen3_vl only in "
        "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
        "model/multimodal.py (blocks sized), runtime/transformers/load.py auto_model_class, runtime/sim"),
    Behaviour(
        "lm_head_tied_only_if_not_stored",
        "from_pretrained ties lm_head to the input embedding only when the config says tie AND the checkpoint "
        "holds no lm_head weight; a stored lm_head stays a separate tensor, a missing untied one is initialised",
        _same(True),
        "modeling_utils.py PreTrainedModel.tie_weights / get_expanded_tied_weights_keys (reads each sub-model's "
        "top-level config.tie_word_embeddings); models/mistral3/configuration_mistral3.py:98 `tie_word_embeddings: "
        "bool = True` although Mistral 3 checkpoints store lm_head.weight",
        "model/multimodal.py loaded_tie (planner and simulator)"),
    Behaviour(
        "text_tie_forwarded",
        "multimodal families whose config sets the top-level tie_word_embeddings when text_config ties (the others "
        "read only the top-level flag, so a tie stated in text_config alone leaves lm_head untied)",
        _same(("qwen2_5_vl",)),
        "models/qwen2_5_vl/configuration_qwen2_5_vl.py Qwen2_5_VLConfig.__post_init__ `if not "
        "self.tie_word_embeddings and getattr(self.text_config, \"tie_word_embeddings\", False): "
        "self.tie_word_embeddings = True`; Gemma3Config, Mistral3Config, Qwen3VLConfig have no such line (Llama 4 "
        "loads its text model, which reads text_config's own flag)",
        "model/multimodal.py loaded_tie"),
    Behaviour(
        "config_defaults",
        "defaults of the config keys the planner reads, per config class, composite family and missing sub-config "
        "(model/defaults.py)",
        _same(CONFIG_DEFAULTS),
        "dataclass field defaults of models/{gemma3,siglip,mistral,pixtral,llama4,qwen2_5_vl,qwen3_vl,mistral3}/"
        "configuration_*.py; configuration_utils.py SubConfigSpec.create_subconfig (init_kwargs only for a missing "
        "sub-config); Gemma3TextConfig.__post_init__ `kwargs.get(\"sliding_window_pattern\", 6)`",
        "model/multimodal.py (resolving config.json without transformers)"),
)}


def normalize_version(version: str) -> str:
    """'5.24.0' / '5.24' / '5.24.0.dev0' -> '5.24'; refuses versions the model was not read for."""
    parts = str(version).strip().split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise UsageError(f"--transformers {version!r} is not a version like 5.24 or 5.24.0")
    minor = f"{int(parts[0])}.{int(parts[1])}"
    if minor not in MODELLED:
        raise UsageError(f"transformers {version} is not modelled by this vplan (modelled: {', '.join(MODELLED)}); "
                         f"plan with --transformers {DEFAULT_TRANSFORMERS} and install that version on the nodes, or "
                         "upgrade vplan")
    return minor


def behaviour(key: str, version: str):
    return BEHAVIOURS[key].values[normalize_version(version)]


def requirement_spec(version: str) -> str:
    """The version specifier plans record for transformers: the modelled minor release."""
    minor = normalize_version(version)
    major, m = minor.split(".")
    return f">={minor},<{major}.{int(m) + 1}"


def version_of_requirement(spec: str) -> str:
    """The modelled minor release of a ``requirement_spec`` ('>=5.24,<5.25' -> '5.24')."""
    return normalize_version(spec.split(",")[0].strip().removeprefix(">="))


def version_text(v: tuple[int, ...]) -> str:
    """(0, 19, 0) -> '0.19', (0, 18, 2) -> '0.18.2', (7, 5) -> '7.5'."""
    parts = list(v)
    while len(parts) > 2 and parts[-1] == 0:
        parts.pop()
    return ".".join(map(str, parts))


def mxfp4_needs(version: str) -> str:
    """What MXFP4 needs on a node under transformers ``version``, as shown to users."""
    r = behaviour("mxfp4_requirements", version)
    return (f"`kernels` (>={version_text(r['kernels'][0])},<{version_text(r['kernels'][1])}) and triton >= "
            f"{version_text(r['triton_min'])} on a GPU of compute capability >= {version_text(r['min_cc'])}")


def markdown() -> str:
    """docs/transformers-versions.md (tests check the committed file equals this)."""
    out = ["# transformers behaviours the memory model depends on", "",
           "Generated from `planner/model/behaviours.py` by `python -m vplan.planner.model.behaviours > "
           "docs/transformers-versions.md`; do not edit by hand. Every entry is read off the installed transformers by "
           "tests/model/test_behaviours.py, which CI runs under each modelled release "
           f"({', '.join(MODELLED)}).", "",
           "| id | what | " + " | ".join(MODELLED) + " | used by |", "|---|---|" + "---|" * len(MODELLED) + "---|"]
    for b in BEHAVIOURS.values():
        vals = [_short(b.values[v]) for v in MODELLED]
        if len(set(vals)) == 1 and b.id == "config_defaults":
            vals = ["planner/model/defaults.py"] * len(MODELLED)
        out.append(f"| `{b.id}` | {b.what} | " + " | ".join(vals) + f" | {b.used_by} |")
    out += ["", "## Evidence", ""]
    for b in BEHAVIOURS.values():
        out.append(f"- `{b.id}`: {b.evidence}")
    return "\n".join(out).replace("\n\n\n", "\n\n") + "\n"


def _short(value) -> str:
    return str(value).replace("|", "/").replace("'", "")


if __name__ == "__main__":
    print(markdown(), end="")
