"""The behaviour table (planner/model/behaviours.py) against the installed transformers: every entry is read off the
installed code, so a release that changes one fails here instead of shifting numbers silently.
scripts/test.sh runs this under each modelled release (5.24 in the venv, 5.23 from its own folder)."""
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from vplan.planner.model.architectures import SUPPORTED  # noqa: E402
from vplan.planner.model.behaviours import BEHAVIOURS, MODELLED, behaviour, markdown, normalize_version  # noqa: E402
from vplan.planner.model.multimodal import FAMILIES  # noqa: E402

INSTALLED = transformers.__version__
ROOT = Path(__file__).parent.parent.parent


def value(key):
    return behaviour(key, INSTALLED)


def test_the_installed_transformers_is_a_modelled_release():
    assert normalize_version(INSTALLED) in MODELLED, (
        f"transformers {INSTALLED} is not modelled: read its changes, add them to planner/model/behaviours.py "
        "with their evidence, and pin it in scripts/constraints.txt")


def test_every_behaviour_has_a_value_for_every_modelled_release_evidence_and_a_check_here():
    for b in BEHAVIOURS.values():
        assert set(b.values) == set(MODELLED), b.id
        assert b.evidence and b.what and b.used_by
        assert f"check_{b.id}" in globals(), f"no check for {b.id}: every entry is read off the installed code"


def test_the_docs_table_is_generated_from_this_table():
    doc = ROOT / "docs" / "transformers-versions.md"
    assert doc.read_text() == markdown(), "regenerate: python -m vplan.planner.model.behaviours > " \
                                          "docs/transformers-versions.md"


@pytest.mark.parametrize("key", list(BEHAVIOURS))
def test_behaviour_matches_the_installed_transformers(key):
    globals()[f"check_{key}"]()


# ----------------------------------------------------------------------------- one check per entry
def _pretrained_classes(model_type: str) -> list[type]:
    """The PreTrainedModel classes in the modelling module of ``model_type`` (a composite's sub-models included)."""
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    mod = importlib.import_module(f"transformers.models.{model_type_to_module_name(model_type)}.modeling_"
                                  f"{model_type_to_module_name(model_type)}")
    return [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, transformers.PreTrainedModel)
            and c.__module__ == mod.__name__]


MODELLED_TYPES = sorted(SUPPORTED | set(FAMILIES))


def _strict(model_type: str) -> set[str]:
    return {n for c in _pretrained_classes(model_type) for n in (c._keep_in_fp32_modules_strict or ())}


def check_deepseek_router_fp32():
    for mt in ("deepseek_v2", "deepseek_v3"):
        assert ("gate.weight" in _strict(mt)) == value("deepseek_router_fp32")


def check_deepseek_v3_e_score_bias_fp32():
    assert ("e_score_correction_bias" in _strict("deepseek_v3")) == value("deepseek_v3_e_score_bias_fp32")
    # and nothing else is kept in fp32 by any modelled architecture: a new entry must be modelled first
    for mt in MODELLED_TYPES:
        known = {"gate.weight"} if mt.startswith("deepseek") and value("deepseek_router_fp32") else set()
        known |= {"e_score_correction_bias"} if mt == "deepseek_v3" else set()
        assert _strict(mt) == known, mt


def check_keep_in_fp32_if_fp16():
    table = value("keep_in_fp32_if_fp16")
    for mt in MODELLED_TYPES:
        got = {n for c in _pretrained_classes(mt) for n in (c._keep_in_fp32_modules or ())}
        assert got == set(table.get(mt, ())), mt


def check_eager_only():
    from vplan.runtime.transformers.load import auto_model_class

    table = value("eager_only")
    for mt in MODELLED_TYPES:
        cls = auto_model_class(mt)._model_mapping[transformers.AutoConfig.for_model(mt).__class__]
        assert (not cls._supports_sdpa) == (mt in table), mt


def check_mxfp4_requirements():
    from transformers.quantizers.quantizer_mxfp4 import Mxfp4HfQuantizer
    from transformers.utils import import_utils

    r = value("mxfp4_requirements")
    assert (import_utils.KERNELS_MIN_VERSION, import_utils.KERNELS_MAX_VERSION) == \
        tuple(".".join(map(str, v)) for v in r["kernels"])
    src = inspect.getsource(Mxfp4HfQuantizer.validate_environment)
    assert f"compute_capability >= {tuple(r['min_cc'])}" in src
    assert f'is_triton_available("{".".join(map(str, r["triton_min"]))}")' in src


def check_fp8_min_cc():
    from transformers.quantizers.quantizer_finegrained_fp8 import FineGrainedFP8HfQuantizer

    major, minor = value("fp8_min_cc")
    src = inspect.getsource(FineGrainedFP8HfQuantizer.validate_environment)
    assert f"(major < {major}) or (major == {major} and minor < {minor})" in src


def check_fp8_dequant_unscaled_take_load_dtype():
    from transformers.integrations.finegrained_fp8 import Fp8Dequantize

    src = inspect.getsource(Fp8Dequantize.convert)
    assert ("quantized.to(output_dtype)" in src) == value("fp8_dequant_unscaled_take_load_dtype")


def _tiny(model_type: str, **over):
    cfg = dict(hidden_size=64, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=128, num_local_experts=4, num_experts_per_tok=2, **over)
    conf = transformers.AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(conf, dtype=torch.bfloat16)


def _converted(model, qconfig) -> tuple[set, set]:
    """(weight classes converted, weight classes left) by the quantizer's preprocess on a meta model."""
    from transformers.quantizers import AutoHfQuantizer

    before = {n: type(m) for n, m in model.named_modules()}
    AutoHfQuantizer.from_config(qconfig, pre_quantized=False).preprocess_model(model, device_map="auto")
    conv, left = set(), set()
    for n, m in model.named_modules():
        if n not in before or n == "":
            continue
        cls = "linear" if before[n] is torch.nn.Linear else "experts" if n.endswith(".experts") else None
        if cls is not None and n != "lm_head":
            (conv if type(m) is not before[n] else left).add(cls)
    return conv, left


def check_quantizer_converts():
    from transformers import BitsAndBytesConfig, FineGrainedFP8Config

    table = value("quantizer_converts")
    for method, qc in (("bitsandbytes", BitsAndBytesConfig(load_in_8bit=True)),
                       ("fp8", FineGrainedFP8Config(weight_block_size=[128, 128]))):
        conv, left = _converted(_tiny("mixtral"), qc)
        assert conv == set(table[method]) and not (left & conv), (method, conv, left)
    src = inspect.getsource(importlib.import_module("transformers.integrations.mxfp4").replace_with_mxfp4_linear)
    assert "GptOssExperts" in src and table["mxfp4"] == ("experts",)


def check_fp8_rejects_biased_experts():
    from transformers.integrations.finegrained_fp8 import FP8Experts

    with pytest.raises(AssertionError, match="bias") if value("fp8_rejects_biased_experts") else _nothing():
        FP8Experts(transformers.AutoConfig.for_model("gpt_oss", hidden_size=64, intermediate_size=32,
                                                     num_local_experts=4), block_size=[128, 128], has_bias=True)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def check_cache_layer_of_type():
    from transformers import cache_utils

    kinds = {cache_utils.DynamicLayer: "full", cache_utils.DynamicSlidingWindowLayer: "sliding"}
    got = {t: kinds.get(cls, cls.__name__) for t, cls in cache_utils.DYNAMIC_LAYER_TYPE_MAPPING.items()
           if t in value("cache_layer_of_type")}
    assert got == value("cache_layer_of_type")


def check_sliding_cache_holds_prompt_after_prefill():
    from transformers.cache_utils import DynamicSlidingWindowLayer

    layer = DynamicSlidingWindowLayer(sliding_window=8)
    k = torch.zeros(1, 2, 20, 4)
    layer.update(k, k.clone())
    held = layer.keys.untyped_storage().nbytes() // (2 * 4 * 4)
    assert (held == 20) == value("sliding_cache_holds_prompt_after_prefill") and layer.keys.shape[2] == 7


def check_qwen_sliding_only_with_use_sliding_window():
    from transformers import Qwen2Config
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLTextConfig

    for cls in (Qwen2Config, Qwen2_5_VLTextConfig):
        assert (cls(sliding_window=4096, use_sliding_window=False).sliding_window is None) == \
            value("qwen_sliding_only_with_use_sliding_window")


def check_llama4_chunked_needs_chunk_size():
    from transformers import Llama4TextConfig

    types = Llama4TextConfig(attention_chunk_size=None, num_hidden_layers=4).layer_types
    assert ("chunked_attention" not in types) == value("llama4_chunked_needs_chunk_size")


def check_llama4_masks_for_present_types_only():
    from transformers.models.llama4 import modeling_llama4

    calls = []
    orig = modeling_llama4.create_chunked_causal_mask
    modeling_llama4.create_chunked_causal_mask = lambda **kw: calls.append(1) or orig(**kw)
    try:
        conf = transformers.Llama4TextConfig(hidden_size=32, intermediate_size=16, intermediate_size_mlp=32,
                                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                             head_dim=16, vocab_size=64, num_local_experts=2,
                                             attention_chunk_size=8, layer_types=["full_attention"] * 2)
        model = transformers.Llama4ForCausalLM(conf).eval()
        with torch.no_grad():
            model(input_ids=torch.zeros((1, 4), dtype=torch.long))
    finally:
        modeling_llama4.create_chunked_causal_mask = orig
    assert (not calls) == value("llama4_masks_for_present_types_only")


def check_causal_lm_multimodal():
    from transformers.models.auto import modeling_auto as ma

    for family, loads in value("causal_lm_multimodal").items():
        causal = ma.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(family)
        itt = ma.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES[family]
        assert {None: causal is None, "full": causal == itt,
                "text": causal is not None and causal != itt and causal.endswith("ForCausalLM")}[loads], family


def check_lm_head_tied_only_if_not_stored(tmp_path_factory=None):
    """A tiny Mistral 3 whose config (no top-level key) says tie: saved untied it loads untied, saved tied it ties."""
    import tempfile

    text = dict(model_type="mistral", hidden_size=32, intermediate_size=16, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=64)
    vision = dict(model_type="pixtral", hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                  num_attention_heads=2, image_size=28, patch_size=14)
    for stored_untied in (True, False):
        conf = transformers.Mistral3Config(text_config=text, vision_config=vision, tie_word_embeddings=not stored_untied)
        model = transformers.Mistral3ForConditionalGeneration(conf)
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d)
            conf_path = Path(d) / "config.json"
            import json

            raw = json.loads(conf_path.read_text())
            raw.pop("tie_word_embeddings", None)  # the class default (True) decides, as on the Hub
            conf_path.write_text(json.dumps(raw))
            loaded = transformers.AutoModelForImageTextToText.from_pretrained(d)
        tied = loaded.lm_head.weight is loaded.get_input_embeddings().weight
        assert tied == (not stored_untied) and value("lm_head_tied_only_if_not_stored")


def check_text_tie_forwarded():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    text = {"gemma3": {}, "mistral3": {"model_type": "mistral"}, "qwen2_5_vl": {}, "qwen3_vl": {}}
    for family, t in text.items():
        conf = CONFIG_MAPPING[family](text_config={**t, "tie_word_embeddings": True}, tie_word_embeddings=False)
        assert conf.tie_word_embeddings == (family in value("text_tie_forwarded")), family


def check_config_defaults():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    d = value("config_defaults")
    for mt, keys in d["class"].items():
        cls = CONFIG_MAPPING[mt]
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        for k, v in keys.items():
            if k == "sliding_window_pattern":  # a __post_init__ kwarg, not a field
                assert cls()._sliding_window_pattern == v
                continue
            got = fields[k]
            assert (tuple(got) if isinstance(got, (list, tuple)) else got) == v, (mt, k)
        assert getattr(cls, "attribute_map", {}) == {**getattr(cls, "attribute_map", {}), **{
            a: t for a, t in d["aliases"].get(mt, {}).items()}}, mt
    for family, keys in d["family"].items():
        cls = CONFIG_MAPPING[family]
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        assert {k: fields[k] for k in keys} == keys, family
        for key, (mt, init_kwargs) in d["subconfig"][family].items():
            spec = cls.sub_configs_defaults[key]
            assert spec.model_type == mt, (family, key)
            assert {k: spec.init_kwargs[k] for k in init_kwargs} == init_kwargs, (family, key)
            assert getattr(cls(), key).model_type == mt
