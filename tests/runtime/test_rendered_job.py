"""The front door end to end on CPU: `vplan plan` -> `vplan render-sbatch` with each payload form -> the script itself
run with bash (as the node would, without SLURM) -> the payload ran: results written, the answer in the log."""
import json
import os
import subprocess
import sys
from pathlib import Path


def _vplan(*args, env):
    return subprocess.run([sys.executable, "-m", "vplan.planner.cli", *args], env=env, capture_output=True, text=True)


def test_rendered_scripts_run_their_payload(tiny_models, tmp_path):
    folder = str(tiny_models["llama"])
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), VPLAN_CACHE=str(tmp_path / "vc"), TMPDIR=str(tmp_path),
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    env.pop("VPLAN_CGROUP_ROOT", None)
    plan = tmp_path / "plan.json"
    r = _vplan("plan", folder, "--gpus-per-node", "0", "--node-mem", "16GB", "--context", "64", "--max-new-tokens", "4",
               "-o", str(plan), env=env)
    assert r.returncode == 0, r.stderr
    assert "vplan render-sbatch" in r.stderr and "--input" in r.stderr  # the next step is named

    r = _vplan("render-sbatch", str(plan), "-o", str(tmp_path / "bare.sh"), env=env)
    assert r.returncode == 2 and "the job needs work to do" in r.stderr and not (tmp_path / "bare.sh").exists()

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("".join(json.dumps({"id": f"r{i}", "prompt": p}) + "\n" for i, p in enumerate(["the w1 w2", "it is w5"])))
    r = _vplan("render-sbatch", str(plan), "-o", str(tmp_path / "job.sh"), "--input", str(inp), "--output", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert f"the job runs: vplan run PLAN --input {inp} --output {out}" in r.stderr
    job = subprocess.run(["bash", str(tmp_path / "job.sh")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert job.returncode == 0, job.stderr[-3000:]
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["r0", "r1"]

    r = _vplan("render-sbatch", str(plan), "-o", str(tmp_path / "one.sh"), "--prompt", "you are w10", env=env)
    assert r.returncode == 0 and "--prompt" in r.stderr, r.stderr
    job = subprocess.run(["bash", str(tmp_path / "one.sh")], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "[*] Model loaded successfully!" in job.stderr and "measured vs planned" in job.stderr
