"""`vplan check` of the six problem-statement models: under 1 s wall, and torch is never imported."""
import os
import subprocess
import sys
import time

SIX = [
    "openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen3-32B", "deepseek-ai/deepseek-llm-7b-chat",
]


def _env(tmp_path):
    env = dict(os.environ)
    env["HF_HOME"] = str(tmp_path / "hf")
    env["VPLAN_CACHE"] = str(tmp_path / "vplan")
    env["HF_HUB_OFFLINE"] = "1"
    env["COLUMNS"] = "200"
    return env


def test_check_six_models_under_one_second_without_torch(tmp_path):
    env = _env(tmp_path)
    cmd = [sys.executable, "-m", "vplan.planner.cli.main", "check", *SIX]
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        best = min(best, time.perf_counter() - t0)
        assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "transformers" not in imported and "accelerate" not in imported
    for m in SIX:
        assert m in r.stdout
    assert best < 1.0, f"vplan check of six models took {best:.2f} s"
