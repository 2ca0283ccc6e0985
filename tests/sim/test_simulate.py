"""The simulator against recorded truths, and the planner held to the simulator."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from vplan.planner import activations, memory  # noqa: E402
from vplan.planner.catalog import load  # noqa: E402
from vplan.planner.errors import SimulationUnsupportedError  # noqa: E402
from vplan.planner.model import build_spec  # noqa: E402
from vplan.runtime.simulate import simulate  # noqa: E402

REF = {(r["model"], r["attn"], r["prompt_tokens"]): r for r in json.loads(
    (Path(__file__).parent.parent / "fixtures" / "sim_reference.json").read_text())["rows"]}


def _predicted(mid, prompt, attn):
    spec = build_spec(mid, None, "catalog", load(mid)["config"], None)
    return (memory.weight_bytes(spec, "bf16") + memory.kv_cache_bytes(spec, prompt, 1, 2)
            + activations.activation_peak_bytes_for_spec(spec, batch=1, prompt_tokens=prompt, attn_implementation=attn))


@pytest.mark.parametrize("mid,attn,prompt", [("deepseek-ai/deepseek-llm-7b-chat", "sdpa", 512), ("Qwen/Qwen3-8B", "eager", 512),
                                             ("deepseek-ai/DeepSeek-V2-Lite", "sdpa", 4096)])
def test_simulator_reproduces_reference_peak_exactly_and_planner_within_bounds(mid, attn, prompt):
    ref = REF[(mid, attn, prompt)]
    r = simulate(load(mid)["config"], batch=1, prompt_tokens=prompt, new_tokens=16, attn_implementation=attn)
    assert r.peak_bytes == ref["peak_bytes"]
    assert r.breakdown == {"weights": ref["weights_bytes"], "kv": ref["kv_bytes"], "activations": ref["activation_bytes"]}
    assert r.where["phase"] == ref["phase"]
    assert r.where["op"].split(".")[1] in ref["where"]
    err = (_predicted(mid, prompt, attn) - r.peak_bytes) / r.peak_bytes
    assert -0.01 <= err <= 0.02


def test_two_devices_split_weights_and_kv_by_the_device_map():
    cfg = load("Qwen/Qwen3-0.6B")["config"]
    layers = cfg["num_hidden_layers"]
    dmap = {"model.embed_tokens": "0", "model.rotary_emb": "0", "model.norm": "1", "lm_head": "1"}
    dmap.update({f"model.layers.{i}": "0" if i < layers // 2 else "1" for i in range(layers)})
    one = simulate(cfg, batch=1, prompt_tokens=256, new_tokens=2)
    two = simulate(cfg, batch=1, prompt_tokens=256, new_tokens=2, device_map=dmap)
    assert set(two.gpu_peak_bytes) == {"0", "1"}
    assert max(two.gpu_peak_bytes.values()) < one.peak_bytes
    spec = build_spec("Qwen/Qwen3-0.6B", None, "catalog", cfg, None)
    w = memory.weight_bytes_by_block(spec, "bf16")
    # tied lm_head lives with embed_tokens: device 1 holds half the layers + the final norm
    dev1_weights = sum(b for n, b in w.items() if dmap.get(n) == "1")
    assert abs(two.gpu_peak_bytes["1"] - dev1_weights) < 0.1 * dev1_weights + 64 * 2**20


def test_quantized_precisions_are_refused_not_approximated():
    with pytest.raises(SimulationUnsupportedError, match="cannot represent int8"):
        simulate(load("Qwen/Qwen3-0.6B")["config"], batch=1, prompt_tokens=16, new_tokens=1, precision="int8")


def test_cli_simulate_json_contract(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    plan = tmp_path / "p.json"
    subprocess.run([sys.executable, "-m", "vplan.planner.cli", "plan", "Qwen/Qwen3-0.6B", "--context", "512",
                    "--max-new-tokens", "4", "-o", str(plan)], env=env, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "vplan.planner.cli", "simulate", str(plan), "--json"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    for key in ("peak_bytes", "gpu_peak_bytes", "breakdown", "where", "predicted_peak_bytes"):
        assert key in out
    assert out["peak_bytes"] == max(out["gpu_peak_bytes"].values())
    assert abs(out["predicted_peak_bytes"] - out["peak_bytes"]) / out["peak_bytes"] < 0.02
