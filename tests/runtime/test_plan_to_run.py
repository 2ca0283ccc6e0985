"""The whole flow on CPU: `vplan plan` of a tiny random-weight model with a host-RAM cap that forces a
cpu+disk split, then `vplan run` of that plan file, then a resumed rerun."""
import json
import os
import subprocess
import sys

from vplan.planner.api import check_one
from vplan.planner.memory import activations, host, overhead, weights


def _vplan(*args, env):
    return subprocess.run([sys.executable, "-m", "vplan.planner.cli", *args], env=env, capture_output=True, text=True)


def test_plan_then_run_cpu_disk_and_resume(tiny_models, tmp_path):
    folder = str(tiny_models["llama"])
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), VPLAN_CACHE=str(tmp_path / "vc"),
               VPLAN_OFFLOAD_FOLDER=str(tmp_path / "offload"))
    env.pop("VPLAN_CGROUP_ROOT", None)
    spec = check_one(folder).spec
    w = weights.weight_bytes_by_block(spec, "bf16")
    act = activations.activation_peak_bytes(spec, batch=1, prompt_tokens=256, attn_implementation="sdpa").peak_bytes
    # a node whose RAM leaves room for about half the weights after the process, the load peak and the activations
    node_mem = int((overhead.HOST_PROCESS_BYTES + overhead.host_load_peak_bytes(max(w.values())) + act
                    + sum(w.values()) // 2) / host.HOST_USABLE_FRACTION) + 1
    plan_path = tmp_path / "plan.json"
    r = _vplan("plan", folder, "--gpus-per-node", "0", "--node-mem", f"{node_mem}B", "--context", "256",
               "--max-new-tokens", "6", "-o", str(plan_path), env=env)
    assert r.returncode == 0, r.stderr
    plan = json.loads(plan_path.read_text())
    assert plan["status"] == "disk-offload" and plan["gpus"] == 0
    assert {"cpu", "disk"} <= set(plan["device_map"].values())
    assert plan["device_map"]["lm_head"] in ("cpu", "disk")

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p}) + "\n"
                           for i, p in enumerate(["the w1 w2 of w3", "you are w10 w11", "it is w5 w6 w7"])))
    out = tmp_path / "out.jsonl"
    r = _vplan("run", str(plan_path), "--input", str(inp), "--output", str(out), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in ("[*] Device map: explicit from the plan", "[*] Model loaded successfully!", "[*] Device map: as planned",
                 "measured vs planned"):
        assert line in r.stderr
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in recs] == ["r0", "r1", "r2"] and all(x["new_tokens"] == 6 for x in recs)

    # rerun: everything is done already, nothing duplicated
    r = _vplan("run", str(plan_path), "--input", str(inp), "--output", str(out), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["r0", "r1", "r2"]
