"""The CLI with --engine: the check --json keys for vLLM plans, both engines side by side, vLLM plan files."""
import json

import pytest

from tests.planner.test_cli import env, vplan  # noqa: F401 (env is a fixture)


def test_check_json_with_both_engines(env):
    r = vplan(env, "check", "deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct", "--engine", "all",
              "--requests", "5000", "--prompt-tokens", "3000", "--max-new-tokens", "500", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [(m["model"], m["plan"]["engine"]) for m in d["models"]] == [
        ("deepseek-ai/DeepSeek-V2.5", "transformers"), ("deepseek-ai/DeepSeek-V2.5", "vllm"),
        ("meta-llama/Llama-3.3-70B-Instruct", "transformers"), ("meta-llama/Llama-3.3-70B-Instruct", "vllm")]
    ds = d["models"][1]["plan"]
    for k in ("engine", "nodes", "tensor_parallel_size", "pipeline_parallel_size", "kv_cache_tokens", "max_concurrency",
              "throughput_tokens_per_s", "gpu_bytes", "decode_tokens_per_s", "job_seconds", "gpu_hours"):
        assert k in ds
    assert ds["status"] == "fits" and ds["nodes"] > 1
    assert len(ds["gpu_bytes"]) == ds["nodes"] * ds["gpus"] == ds["tensor_parallel_size"] * ds["pipeline_parallel_size"]
    assert all(isinstance(b, int) and b <= g["capacity_bytes"] for b, g in zip(ds["gpu_bytes"], ds["gpu_breakdown"]))
    assert d["models"][0]["plan"]["tensor_parallel_size"] is None  # transformers plans carry the keys, null
    comp = {c["model"]: c for c in d["comparison"]}
    assert comp["deepseek-ai/DeepSeek-V2.5"]["faster_engine"] == "vllm"
    assert comp["meta-llama/Llama-3.3-70B-Instruct"]["faster_engine"] == "vllm"
    assert comp["meta-llama/Llama-3.3-70B-Instruct"]["engines"]["vllm"]["nodes"] == 1
    assert d["experiment"]["transformers"]["not_runnable"] == ["deepseek-ai/DeepSeek-V2.5"]
    assert d["experiment"]["vllm"]["models"] == 2 and d["experiment"]["vllm"]["gpu_hours"] < d["experiment"]["transformers"]["gpu_hours"]


def test_check_table_shows_engines_side_by_side(env):
    r = vplan(env, "check", "Qwen/Qwen3-32B", "--engine", "all", "--requests", "5000")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Qwen/Qwen3-32B (vllm)" in out and "transformers setup" in out and "vllm setup" in out
    assert "experiment" in out and "--tensor-parallel-size 2" in out and "KV cache" in out


def test_engine_comparison_fits_80_columns_with_the_totals(env):
    """The side-by-side table of the six models fits 80 columns (the shapes give way to the precisions; the
    GPU-hours, the experiment's totals and the faster engine stay)."""
    from tests.fuzz.harness import assert_text_fits

    six = ["openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct",
           "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen3-32B", "deepseek-ai/deepseek-llm-7b-chat"]
    r = vplan(dict(env, COLUMNS="80"), "check", *six, "--engine", "all", "--requests", "5000", "--prompt-tokens",
              "3000", "--max-new-tokens", "500")
    assert r.returncode == 0, r.stderr
    assert_text_fits(r.stdout, 80)
    table = r.stdout.split("the job: 5,000 requests", 1)[1].split("\n\n", 1)[0].splitlines()
    head = next(i for i, line in enumerate(table) if line.startswith("model "))
    assert table[head].split() == ["model", "transformers", "GPU-h", "vllm", "GPU-h", "faster"]
    rows = {line.split()[0]: line.split() for line in table[head + 2:]}
    assert rows["DeepSeek-V2.5"][1:3] == ["does-not-fit", "-"] and rows["DeepSeek-V2.5"][-1] == "vllm"
    per_model = [float(v[2]) for k, v in rows.items() if k != "experiment" and v[2] != "-"]
    assert float(rows["experiment"][1]) == pytest.approx(sum(per_model), abs=0.1 * len(per_model))


def test_vllm_plan_file_round_trips(env, tmp_path):
    from vplan.planner.plan import read_plan

    out = tmp_path / "ds.json"
    r = vplan(env, "plan", "deepseek-ai/DeepSeek-V2.5", "--engine", "vllm", "-o", str(out))
    assert r.returncode == 0, r.stderr
    p = read_plan(out)
    assert (p.engine, p.status) == ("vllm", "fits") and p.nodes > 1 and p.device_map == {}
    assert p.vllm.version == "0.32.0" and p.requirements["vllm"].spec == ">=0.32,<0.34"
    assert len(p.vllm.ranks) == p.nodes * p.gpus
    r = vplan(env, "plan", "Qwen/Qwen3-32B", "--engine", "all", "-o", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "one engine" in r.stderr and "Traceback" not in r.stderr
