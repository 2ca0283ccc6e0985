"""What transformers' config classes fill in when a multimodal config.json leaves a key out (the value of the
``config_defaults`` behaviour, planner/model/behaviours.py).

A config.json names only what differs from its classes' defaults, so the planner, which never imports
transformers, keeps the defaults of every key it reads where configs leave them out: per config class (``CLASS``, keyed by ``model_type``; the
dataclass field defaults of ``configuration_<family>.py``), per composite family the defaults of its own keys
(``FAMILY``), and what a whole missing ``text_config`` / ``vision_config`` becomes (``SUBCONFIG``: the sub-config's
``model_type`` and the ``SubConfigSpec.init_kwargs`` transformers passes, ``configuration_utils.SubConfigSpec
.create_subconfig``: a given dict is built with the class defaults only, a missing one with these kwargs).
``ALIASES`` are the config classes' ``attribute_map`` entries for the keys read. tests/model/test_behaviours.py
checks every value here against the installed transformers, under each modelled release.
"""
from __future__ import annotations

_GEMMA3_TEXT = {
    "vocab_size": 262_208, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131_072,
    "tie_word_embeddings": True, "attention_bias": False, "sliding_window": 4096, "layer_types": None,
    "sliding_window_pattern": 6, "use_bidirectional_attention": False,
}
_SIGLIP = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
           "num_channels": 3, "image_size": 224, "patch_size": 16, "vision_use_head": True}
_MISTRAL = {
    "vocab_size": 32_000, "hidden_size": 4096, "intermediate_size": 14_336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": None, "max_position_embeddings": 131_072,
    "tie_word_embeddings": False, "sliding_window": 4096,
}
_PIXTRAL = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
            "num_channels": 3, "image_size": 1024, "patch_size": 16}
_LLAMA4_TEXT = {
    "vocab_size": 202_048, "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16_384,
    "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
    "max_position_embeddings": 131_072, "tie_word_embeddings": False, "num_experts_per_tok": 1,
    "num_local_experts": 16, "moe_layers": None, "interleave_moe_layer_step": 1, "use_qk_norm": True,
    "no_rope_layers": None, "no_rope_layer_interval": 4, "attention_chunk_size": 8192, "layer_types": None,
    "attn_temperature_tuning": True, "attention_bias": False,
}
_QWEN2_5_VL_TEXT = {
    "vocab_size": 152_064, "hidden_size": 8192, "intermediate_size": 29_568, "num_hidden_layers": 80,
    "num_attention_heads": 64, "num_key_value_heads": 8, "max_position_embeddings": 32_768,
    "use_sliding_window": False, "sliding_window": 4096, "max_window_layers": 80, "layer_types": None,
}
_QWEN2_5_VL_VISION = {"depth": 32, "hidden_size": 3584, "intermediate_size": 3420, "num_heads": 16, "in_channels": 3,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 3584}
_QWEN3_VL_TEXT = {
    "vocab_size": 151_936, "hidden_size": 4096, "intermediate_size": 22_016, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128, "max_position_embeddings": 128_000,
    "attention_bias": False,
}
_QWEN3_VL_VISION = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16, "in_channels": 3,
                    "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 3584,
                    "num_position_embeddings": 2304, "deepstack_visual_indexes": (8, 16, 24)}

# the text architectures: only the defaults their layouts read when a config.json leaves them out
_TEXT = {
    "llama": {"tie_word_embeddings": False}, "phi3": {"tie_word_embeddings": False},
    "qwen2": {"tie_word_embeddings": False, "max_window_layers": 28},
    "qwen3": {"tie_word_embeddings": False, "max_window_layers": 28},
    "gemma": {"tie_word_embeddings": True}, "gemma2": {"tie_word_embeddings": True},
    "mixtral": {"tie_word_embeddings": False, "num_experts_per_tok": 2},
    "qwen3_moe": {"tie_word_embeddings": False, "num_experts_per_tok": 8},
    "deepseek_v2": {"tie_word_embeddings": False, "num_experts_per_tok": None},
    "deepseek_v3": {"tie_word_embeddings": False, "num_experts_per_tok": 8},
    "gpt_oss": {"tie_word_embeddings": False, "num_experts_per_tok": 4},
}

CLASS: dict[str, dict] = {
    **_TEXT,
    "gemma3_text": _GEMMA3_TEXT, "siglip_vision_model": _SIGLIP, "mistral": _MISTRAL, "pixtral": _PIXTRAL,
    "llama4_text": _LLAMA4_TEXT, "qwen2_5_vl_text": _QWEN2_5_VL_TEXT, "qwen2_5_vl_vision": _QWEN2_5_VL_VISION,
    "qwen3_vl_text": _QWEN3_VL_TEXT, "qwen3_vl_vision": _QWEN3_VL_VISION,
}

FAMILY: dict[str, dict] = {
    "gemma3": {"tie_word_embeddings": True},
    "mistral3": {"tie_word_embeddings": True, "vision_feature_layer": -1, "multimodal_projector_bias": False,
                 "spatial_merge_size": 2},
    "llama4": {"tie_word_embeddings": False},
    "qwen2_5_vl": {"tie_word_embeddings": False},
    "qwen3_vl": {"tie_word_embeddings": False},
}

_MISTRAL3_TEXT_KW = {"head_dim": 128, "hidden_size": 5120, "intermediate_size": 32_768, "max_position_embeddings": 131_072,
                     "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8, "sliding_window": None,
                     "vocab_size": 131_072}
_MISTRAL3_VISION_KW = {"intermediate_size": 4096, "hidden_size": 1024, "patch_size": 14, "image_size": 1540,
                       "num_hidden_layers": 24, "num_attention_heads": 16}
SUBCONFIG: dict[str, dict[str, tuple[str, dict]]] = {
    "gemma3": {"text_config": ("gemma3_text", {}), "vision_config": ("siglip_vision_model", {})},
    "mistral3": {"text_config": ("mistral", _MISTRAL3_TEXT_KW), "vision_config": ("pixtral", _MISTRAL3_VISION_KW)},
    "llama4": {"text_config": ("llama4_text", {})},
    # Qwen2.5-VL Hub configs are flat: without a text_config the top-level keys are the text model's
    # (Qwen2_5_VLConfig.__post_init__); the planner handles that before looking here
    "qwen2_5_vl": {"text_config": ("qwen2_5_vl_text", {}), "vision_config": ("qwen2_5_vl_vision", {})},
    "qwen3_vl": {"text_config": ("qwen3_vl_text", {}), "vision_config": ("qwen3_vl_vision", {})},
}

ALIASES: dict[str, dict[str, str]] = {
    "qwen2_5_vl_vision": {"num_attention_heads": "num_heads", "num_hidden_layers": "depth"},
    "qwen3_vl_vision": {"num_attention_heads": "num_heads", "num_hidden_layers": "depth"},
}

CONFIG_DEFAULTS = {"class": CLASS, "family": FAMILY, "subconfig": SUBCONFIG, "aliases": ALIASES}
