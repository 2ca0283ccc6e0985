"""Wall time of `vplan check` for the six problem-statement models (offline, bundled catalog), best of N runs.

    .venv/bin/python benchmarks/check_speed.py [--runs 5]

Prints one JSON line and writes benchmarks/results/check_speed.json. A unit test must not assert wall time
(machines differ and CI shares cores); this is where the number is measured and recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIX = ["openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct",
       "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen3-32B", "deepseek-ai/deepseek-llm-7b-chat"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HF_HOME=f"{tmp}/hf", VPLAN_CACHE=f"{tmp}/vplan", HF_HUB_OFFLINE="1")
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "vplan.planner.cli", "check", *SIX], env=env, capture_output=True)
            times.append(time.perf_counter() - t0)
            if r.returncode != 0:
                sys.exit(r.stderr.decode()[-2000:])
    out = {"command": "vplan check <six models>", "best_s": round(min(times), 3), "median_s": round(sorted(times)[len(times) // 2], 3),
           "runs": a.runs, "max_rss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
           "machine": platform.platform(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(out))
    (Path(__file__).parent / "results" / "check_speed.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
