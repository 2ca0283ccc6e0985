"""`vplan plan` -> `vplan simulate PLAN --json`: the contract the CLI exposes, and simulate_plan's reading of a plan."""
import json
import os
import subprocess
import sys

from vplan.runtime.sim.simulate import simulate_plan


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
    assert out["new_tokens"] == 4 and out["prompt_tokens"] > 0


def test_simulate_plan_caps_decode_steps_and_says_so():
    from dataclasses import replace

    from vplan.planner.api import CheckOptions, check_one
    from vplan.planner.plan.contract import Workload
    from vplan.planner.search.core import SearchOptions

    wl = Workload(context_tokens=264, prompt_tokens=64, max_new_tokens=200, batch=2)
    plan = check_one("Qwen/Qwen3-0.6B", options=CheckOptions(search=SearchOptions(workload=wl), offline=True)).plan
    plan = replace(plan, config={**plan.config, "num_hidden_layers": 2}, device_map={})
    res = simulate_plan(plan)
    assert res.new_tokens == 16 and res.batch == 2 and res.prompt_tokens == 64
    assert any("16 of 200 decode steps" in n for n in res.notes)
