"""`vplan check` of the six problem-statement models never imports the runtime's heavy packages (its wall time is
measured by benchmarks/check_speed.py, not asserted here)."""
import os
import subprocess
import sys

SIX = [
    "openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct",
    "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen3-32B", "deepseek-ai/deepseek-llm-7b-chat",
]


def test_check_six_models_without_torch(tmp_path):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), VPLAN_CACHE=str(tmp_path / "vplan"), HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "vplan.planner.cli", "check", *SIX], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"torch", "transformers", "accelerate", "huggingface_hub", "vllm"}, imported
    for m in SIX:
        assert m in r.stdout
