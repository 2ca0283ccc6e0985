"""Multimodal models through the simulator and the runtime: both load the class the planner sized (the whole model,
or Llama 4's text model), the analytic peak of scaled-down configs built from transformers' config classes stays
within the accuracy bound of the simulated generate() (full-size rows: benchmarks/results/accuracy.json), and a
planned tiny Mistral 3 checkpoint runs through `vplan plan` / `vplan run` with the lm_head its checkpoint stores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vplan.planner.memory import activations
from vplan.planner.model import build_spec

FIXTURES = Path(__file__).parent.parent / "fixtures" / "configs"


def fixture(name: str) -> dict:
    return {k: v for k, v in json.loads((FIXTURES / f"{name}.json").read_text()).items() if k != "_comment"}


def test_the_runtime_and_the_simulator_load_the_class_the_planner_sized():
    from vplan.runtime.transformers.load import auto_model_class

    assert auto_model_class("gemma3").__name__ == "AutoModelForCausalLM"  # -> Gemma3ForConditionalGeneration
    assert auto_model_class("llama4").__name__ == "AutoModelForCausalLM"  # -> Llama4ForCausalLM (text only)
    for family in ("mistral3", "qwen2_5_vl", "qwen3_vl"):
        assert auto_model_class(family).__name__ == "AutoModelForImageTextToText"
    assert auto_model_class("llama").__name__ == "AutoModelForCausalLM"


def _scaled(name: str, text: dict, vision: dict | None = None) -> dict:
    cfg = fixture(name)
    cfg["text_config"] = {**cfg["text_config"], **text}
    if vision is not None:
        cfg["vision_config"] = {**cfg["vision_config"], **vision}
    return cfg


SCALED = {  # the published widths, fewer layers (and experts), a smaller vocabulary; windows crossed by the longer
    # prompt (tensors are fake: the cost of a simulation is its number of ops, not their sizes)
    "gemma-3-4b": lambda: _scaled("gemma-3-4b", {"num_hidden_layers": 6, "vocab_size": 16384, "sliding_window": 256,
                                                 "layer_types": None, "sliding_window_pattern": 3},
                                  {"num_hidden_layers": 2}),
    "llama4": lambda: _scaled("llama4-default", {"num_hidden_layers": 4, "vocab_size": 16384, "num_local_experts": 4,
                                                 "attention_chunk_size": 256, "layer_types": None,
                                                 "no_rope_layers": None, "moe_layers": None}),
    "mistral3": lambda: _scaled("mistral-small-3.1", {"num_hidden_layers": 3, "vocab_size": 16384},
                                {"num_hidden_layers": 2}),
}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", list(SCALED))
def test_scaled_configs_predicted_within_bounds_of_the_simulated_peak(name, attn):
    from vplan.runtime.sim.simulate import simulate

    import transformers

    cfg = SCALED[name]()
    spec = build_spec(name, None, "config", cfg, None, transformers=transformers.__version__)
    for prompt in (128, 512):  # below and above the sliding window / attention chunk
        sim = simulate(cfg, batch=1, prompt_tokens=prompt, new_tokens=2, attn_implementation=attn)
        pred = activations.predicted_peak_tensor_bytes(spec, batch=1, prompt_tokens=prompt, attn_implementation=attn)
        err = (pred["peak_bytes"] - sim.peak_bytes) / sim.peak_bytes
        assert -0.01 <= err <= 0.02, (prompt, pred, sim.breakdown, sim.where, f"{err:+.3%}")
        assert abs(pred["weights"] - sim.breakdown["weights"]) < 0.001 * pred["weights"]  # 512-B allocation granules


def _tiny_mistral3(folder: Path) -> None:
    """A random-weight Mistral 3 whose config.json has no top-level tie_word_embeddings (as on the Hub: the class
    default then says tie) and whose checkpoint stores lm_head.weight."""
    import torch
    import transformers

    from tests.runtime.conftest import build_tokenizer

    tok = build_tokenizer(folder)
    conf = transformers.Mistral3Config(
        text_config=dict(model_type="mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=len(tok),
                         sliding_window=None, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=2, image_size=56, patch_size=14),
        tie_word_embeddings=False)
    torch.manual_seed(0)
    transformers.Mistral3ForConditionalGeneration(conf).save_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    raw.pop("tie_word_embeddings", None)
    (folder / "config.json").write_text(json.dumps(raw))


def test_a_planned_mistral3_checkpoint_runs_with_the_lm_head_it_stores(tmp_path):
    folder = tmp_path / "mistral3"
    folder.mkdir()
    _tiny_mistral3(folder)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), VPLAN_CACHE=str(tmp_path / "vc"))
    env.pop("VPLAN_CGROUP_ROOT", None)
    plan_path = tmp_path / "plan.json"
    run = [sys.executable, "-m", "vplan.planner.cli"]
    r = subprocess.run([*run, "plan", str(folder), "--gpus-per-node", "0", "--context", "64", "--max-new-tokens", "3",
                        "-o", str(plan_path)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    plan = json.loads(plan_path.read_text())
    assert plan["architecture"] == "mistral3" and "model.vision_tower" in plan["device_map"]
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(json.dumps({"id": "r0", "prompt": "the w1 w2 of w3"}) + "\n")
    r = subprocess.run([*run, "run", str(plan_path), "--input", str(inp), "--output", str(out)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "[*] Model loaded successfully!" in r.stderr
    assert json.loads(out.read_text().splitlines()[0])["new_tokens"] == 3
    from vplan.planner.plan import read_plan
    from vplan.runtime.transformers.load import auto_model_class

    model = auto_model_class("mistral3").from_pretrained(folder)
    assert type(model).__name__ == "Mistral3ForConditionalGeneration"
    assert model.lm_head.weight is not model.get_input_embeddings().weight  # stored: untied, as planned
    params = sum(p.numel() for p in model.parameters())
    assert read_plan(plan_path).params_total == params


def test_vplan_plan_and_simulate_a_gemma3_split_over_two_gpus(tmp_path):
    """gemma-3-27b (config.json only) on the default nodes (2 x A100-40GB): the vision tower and projector on GPU 0,
    the text layers split; the simulated per-GPU peaks of the planned device map within the accuracy bound."""
    folder = tmp_path / "gemma-3-27b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(fixture("gemma-3-27b")))
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), VPLAN_CACHE=str(tmp_path / "vc"))
    plan_path = tmp_path / "plan.json"
    run = [sys.executable, "-m", "vplan.planner.cli"]
    r = subprocess.run([*run, "plan", str(folder), "--context", "512", "--max-new-tokens", "2", "-o", str(plan_path)],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    plan = json.loads(plan_path.read_text())
    dm = plan["device_map"]
    assert plan["gpus"] == 2 and dm["model.vision_tower"] == dm["model.multi_modal_projector"] == "0"
    assert {dm["model.language_model.layers.0"], dm["model.language_model.layers.61"]} == {"0", "1"}
    r = subprocess.run([*run, "simulate", str(plan_path), "--json"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    for dev, simulated in out["gpu_peak_bytes"].items():
        err = (out["predicted_per_device_bytes"][dev] - simulated) / simulated
        assert -0.01 <= err <= 0.02, (dev, f"{err:+.3%}")
