"""The analytic activation model (pure Python) on its own: its shape reader agrees with the planner's
ModelSpec, it stays within bounds of every row the simulator recorded (benchmarks/results/accuracy.json,
catalog and fixture shapes), and it knows the architecture quirks the simulator showed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vplan.planner.memory import activations
from vplan.planner.source.catalog import list_ids, load
from vplan.planner.model.spec import build_spec

ROOT = Path(__file__).parent.parent.parent
SWEEP = json.loads((ROOT / "benchmarks" / "results" / "accuracy.json").read_text())
ROWS = SWEEP["rows"] + SWEEP.get("fixture_rows", [])


def _config(mid: str) -> dict:
    if mid.startswith("fixture:"):
        cfg = json.loads((ROOT / "tests" / "fixtures" / "configs" / f"{mid[8:]}.json").read_text())
        return {k: v for k, v in cfg.items() if k != "_comment"}
    return load(mid)["config"]


@pytest.mark.parametrize("mid", list_ids())
def test_shape_from_raw_config_matches_the_model_spec(mid):
    cfg = {k: v for k, v in load(mid)["config"].items() if k != "quantization_config"}
    spec = build_spec(mid, None, "catalog", cfg, None)
    assert activations.ActivationShape.from_config(cfg) == activations.ActivationShape.from_spec(spec)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r['model']}-{r['attn']}-{r['prompt_tokens']}")
def test_within_bounds_of_every_recorded_simulation(row):
    pred = activations.predicted_peak_tensor_bytes(_config(row["model"]), batch=1, prompt_tokens=row["prompt_tokens"],
                                                   attn_implementation=row["attn"])
    err = (pred["peak_bytes"] - row["simulated_bytes"]) / row["simulated_bytes"]
    assert -0.01 <= err <= 0.02, f"{pred['peak_bytes']:,} vs {row['simulated_bytes']:,} ({err:+.3%})"


def test_recorded_sweep_covers_every_architecture_in_scope():
    archs = {_config(r["model"]).get("model_type") for r in ROWS}
    assert {"llama", "qwen2", "qwen3", "qwen3_moe", "deepseek_v2", "gpt_oss", "phi3", "mixtral", "gemma2",
            "gemma3_text"} <= archs


def test_mla_expands_the_latent_per_head_for_every_cached_token():
    cfg = load("deepseek-ai/DeepSeek-V2.5")["config"]
    est = activations.activation_peak_bytes(cfg, batch=1, prompt_tokens=1000, attn_implementation="sdpa")
    s = activations.ActivationShape.from_config(cfg)
    per_token_kv = 2 * s.num_heads * (s.mla_qk_nope_head_dim + s.mla_qk_rope_head_dim + s.mla_v_head_dim)
    assert per_token_kv == 81_920  # FACTS: K and V expanded per head, bytes per cached token per layer
    assert est.terms["mla_expand"] >= per_token_kv * 1000


@pytest.mark.parametrize("mid", ["openai/gpt-oss-20b", "fixture:gemma-2-9b"])
def test_eager_only_architectures_predict_eager_whatever_is_asked(mid):
    cfg = _config(mid)
    kw = dict(batch=1, prompt_tokens=4096)
    assert activations.activation_peak_bytes(cfg, attn_implementation="sdpa", **kw) == \
        activations.activation_peak_bytes(cfg, attn_implementation="eager", **kw)


def test_moe_decode_peak_at_short_prompts_and_prefill_at_long_ones():
    cfg = load("Qwen/Qwen3-30B-A3B")["config"]
    short = activations.activation_peak_bytes(cfg, batch=1, prompt_tokens=16, attn_implementation="sdpa")
    long = activations.activation_peak_bytes(cfg, batch=1, prompt_tokens=4096, attn_implementation="sdpa")
    assert (short.phase, long.phase) == ("decode", "prefill")


def test_planner_module_stays_pure():
    code = "import sys, vplan.planner.memory.activations; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
