"""`vplan plan` -> `vplan simulate PLAN --json`: the contract the CLI exposes, and simulate_plan's reading of a plan."""
import json
import os
import subprocess
import sys

from vplan.runtime.simulate import simulate_plan


def test_cli_simulate_json_contract(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    plan = tmp_path / "p.json"
    subprocess.run([sys.executable, "-m", "vplan.planner.cli.main", "plan", "Qwen/Qwen3-0.6B", "--context", "512",
                    "--max-new-tokens", "4", "-o", str(plan)], env=env, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "vplan.planner.cli.main", "simulate", str(plan), "--json"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    for key in ("peak_bytes", "gpu_peak_bytes", "breakdown", "where", "predicted_peak_bytes"):
        assert key in out
    assert out["peak_bytes"] == max(out["gpu_peak_bytes"].values())
    assert abs(out["predicted_peak_bytes"] - out["peak_bytes"]) / out["peak_bytes"] < 0.02
    assert out["new_tokens"] == 4 and out["prompt_tokens"] > 0


def test_simulate_plan_caps_decode_steps_and_says_so():
    from vplan.planner.source.catalog import load

    plan = {"config": {**load("Qwen/Qwen3-0.6B")["config"], "num_hidden_layers": 2}, "precision": "bf16", "dtype": "bfloat16", "device_map": None,
            "workload": {"prompt_tokens": 64, "max_new_tokens": 200, "batch": 2, "context_tokens": 264,
                         "attn_implementation": "sdpa"}}
    res = simulate_plan(plan)
    assert res.new_tokens == 16 and res.batch == 2 and res.prompt_tokens == 64
    assert any("16 of 200 decode steps" in n for n in res.notes)
