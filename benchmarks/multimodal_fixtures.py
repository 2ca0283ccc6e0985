"""Write the multimodal truth configs (tests/fixtures/configs/*.json) from transformers' own config classes.

    python benchmarks/multimodal_fixtures.py

``<family>-default``: the config class with no arguments (``Gemma3Config()``, ``Mistral3Config()``,
``Llama4Config()``, ``Qwen2_5_VLConfig()``, ``Qwen3VLConfig()``), as ``save_pretrained`` writes it
(``to_diff_dict``). The Hub-shaped ones pass the published config.json layout of a model through the same class
(dimensions as published; the flat Qwen2.5-VL layout is kept as the Hub stores it, since that layout is what the
planner must read). The planner reads these files without transformers; the simulator and the meta-device tests
build them with it.
"""
from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).parent.parent / "tests" / "fixtures" / "configs"

SIGLIP_896 = {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
              "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 896, "patch_size": 14,
              "vision_use_head": False}
HUB = {
    "gemma-3-4b": ("google/gemma-3-4b-it", {
        "model_type": "gemma3", "mm_tokens_per_image": 256, "boi_token_index": 255999, "eoi_token_index": 256000,
        "image_token_index": 262144,
        "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "intermediate_size": 10240,
                        "num_hidden_layers": 34, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                        "query_pre_attn_scalar": 256, "sliding_window": 1024, "sliding_window_pattern": 6,
                        "vocab_size": 262208, "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0},
        "vision_config": SIGLIP_896}),
    "gemma-3-27b": ("google/gemma-3-27b-it", {
        "model_type": "gemma3", "mm_tokens_per_image": 256,
        "text_config": {"model_type": "gemma3_text", "hidden_size": 5376, "intermediate_size": 21504,
                        "num_hidden_layers": 62, "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
                        "query_pre_attn_scalar": 168, "sliding_window": 1024, "sliding_window_pattern": 6,
                        "vocab_size": 262208, "rope_scaling": {"factor": 8.0, "rope_type": "linear"}},
        "vision_config": SIGLIP_896}),
    "llama4-maverick": ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", {
        "model_type": "llama4",
        "text_config": {"model_type": "llama4_text", "attention_chunk_size": 8192, "head_dim": 128,
                        "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
                        "num_attention_heads": 40, "num_hidden_layers": 48, "num_key_value_heads": 8,
                        "num_local_experts": 128, "num_experts_per_tok": 1, "interleave_moe_layer_step": 2,
                        "use_qk_norm": False, "vocab_size": 202048, "max_position_embeddings": 1048576,
                        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                         "original_max_position_embeddings": 8192, "rope_type": "llama3"}},
        "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 1408, "intermediate_size": 5632,
                          "num_hidden_layers": 34, "num_attention_heads": 16, "image_size": 336, "patch_size": 14,
                          "pixel_shuffle_ratio": 0.5, "projector_input_dim": 4096, "projector_output_dim": 4096,
                          "vision_output_dim": 4096}}),
}
RAW = {  # kept as the Hub stores them: Qwen2.5-VL's flat layout (text keys at the top level), Mistral Small 3.1
    # without a top-level tie_word_embeddings (Mistral3Config then says tie, but the checkpoint stores lm_head)
    "mistral-small-3.1": ("mistralai/Mistral-Small-3.1-24B-Instruct-2503", {
        "model_type": "mistral3", "architectures": ["Mistral3ForConditionalGeneration"], "image_token_index": 10,
        "multimodal_projector_bias": False, "projector_hidden_act": "gelu", "spatial_merge_size": 2,
        "vision_feature_layer": -1, "torch_dtype": "bfloat16",
        "text_config": {"model_type": "mistral", "attention_dropout": 0.0, "head_dim": 128, "hidden_act": "silu",
                        "hidden_size": 5120, "intermediate_size": 32768, "max_position_embeddings": 131072,
                        "num_attention_heads": 32, "num_hidden_layers": 40, "num_key_value_heads": 8,
                        "rms_norm_eps": 1e-05, "rope_theta": 1000000000.0, "sliding_window": None,
                        "vocab_size": 131072},
        "vision_config": {"model_type": "pixtral", "attention_dropout": 0.0, "head_dim": 64, "hidden_act": "silu",
                          "hidden_size": 1024, "image_size": 1540, "intermediate_size": 4096,
                          "num_attention_heads": 16, "num_channels": 3, "num_hidden_layers": 24, "patch_size": 14,
                          "rope_theta": 10000.0}}),
    "qwen2.5-vl-7b": ("Qwen/Qwen2.5-VL-7B-Instruct", {
        "model_type": "qwen2_5_vl", "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
        "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "max_position_embeddings": 128000,
        "max_window_layers": 28, "sliding_window": 32768, "use_sliding_window": False, "tie_word_embeddings": False,
        "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "torch_dtype": "bfloat16",
        "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280, "intermediate_size": 3420,
                          "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584, "patch_size": 14,
                          "spatial_merge_size": 2, "spatial_patch_size": 14, "window_size": 112,
                          "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2, "temporal_patch_size": 2}}),
}
DEFAULTS = ("gemma3", "mistral3", "llama4", "qwen2_5_vl", "qwen3_vl")


def _clean(d: dict) -> dict:
    d = {k: v for k, v in d.items() if k not in ("transformers_version",)}
    for k in ("text_config", "vision_config"):
        if isinstance(d.get(k), dict):
            d[k] = {kk: vv for kk, vv in d[k].items() if kk != "transformers_version"}
    return d


def main() -> None:
    import transformers

    OUT.mkdir(parents=True, exist_ok=True)
    made = {}
    for family in DEFAULTS:
        cfg = transformers.AutoConfig.for_model(family)
        made[f"{family}-default"] = (f"transformers {transformers.__version__} {type(cfg).__name__}() defaults, "
                                     "as save_pretrained writes them", {**_clean(cfg.to_diff_dict()),
                                                                        "model_type": family})
    for name, (repo, raw) in HUB.items():
        cfg = transformers.AutoConfig.for_model(**raw)
        made[name] = (f"{repo} config.json layout through {type(cfg).__name__} (to_diff_dict)",
                      {**_clean(cfg.to_diff_dict()), "model_type": raw["model_type"]})
    for name, (repo, raw) in RAW.items():
        transformers.AutoConfig.for_model(**raw)  # the class accepts it
        made[name] = (f"{repo} config.json layout, as the Hub stores it", raw)
    for name, (comment, cfg) in made.items():
        (OUT / f"{name}.json").write_text(json.dumps({"_comment": comment, **cfg}, indent=1) + "\n")
        print("wrote", OUT / f"{name}.json")


if __name__ == "__main__":
    main()
