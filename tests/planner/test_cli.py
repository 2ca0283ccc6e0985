"""The CLI contract: `check --json` shape and units, plan files, and one-line errors without tracebacks."""
import json
import os
import subprocess
import sys

import pytest


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, HF_HOME=str(tmp_path / "hf"), VPLAN_CACHE=str(tmp_path / "vc"), HF_HUB_OFFLINE="1",
                COLUMNS="200")


def vplan(env, *args):
    return subprocess.run([sys.executable, "-m", "vplan.planner.cli", *args], env=env, capture_output=True, text=True)


def test_check_json_contract(env):
    r = vplan(env, "check", "Qwen/Qwen3-32B", "openai/gpt-oss-20b", "--context", "8192", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["workload"]["context_tokens"] == 8192 and d["workload"]["batch"] == 1
    assert d["cluster"]["gpu"] == "A100-40GB" and d["cluster"]["gpus_per_node"] == 2
    m = {x["model"]: x for x in d["models"]}
    q = m["Qwen/Qwen3-32B"]
    for k in ("model", "revision", "source", "architecture", "params_total", "params_active", "checkpoint_bytes",
              "kv_bytes_per_token", "kv_cache_bytes", "plan", "alternatives"):
        assert k in q
    for k in ("status", "gpus", "precision", "gpu_bytes", "cpu_bytes", "disk_bytes", "decode_tokens_per_s", "load_seconds"):
        assert k in q["plan"]
    assert all(isinstance(b, int) for b in q["plan"]["gpu_bytes"]) and len(q["plan"]["gpu_bytes"]) == q["plan"]["gpus"]
    assert q["kv_bytes_per_token"] == 262_144  # 64 layers x 2 x 8 kv heads x 128 x 2 bytes
    assert q["kv_cache_bytes"] == 262_144 * 8192
    g = m["openai/gpt-oss-20b"]
    # kernels for MXFP4 cannot be seen from here: the default plan is the bf16 fallback, the MXFP4 plan beside it
    assert (g["plan"]["precision"], g["plan"]["gpus"]) == ("bf16", 2)
    mx = [a for a in g["alternatives"] if a["precision"] == "mxfp4"]
    assert mx and mx[0]["status"] == "fits" and any("--mxfp4-kernels" in c for c in mx[0]["conditions"])
    r = vplan(env, "check", "openai/gpt-oss-20b", "--mxfp4-kernels", "--json")
    assert json.loads(r.stdout)["models"][0]["plan"]["precision"] == "mxfp4"


def test_plan_file_round_trips(env, tmp_path):
    from vplan.planner.plan import read_plan

    out = tmp_path / "p.json"
    r = vplan(env, "plan", "Qwen/Qwen3-32B", "-o", str(out))
    assert r.returncode == 0, r.stderr
    p = read_plan(out)
    assert (p.status, p.gpus, p.precision, p.dtype) == ("fits", 2, "bf16", "bfloat16")
    assert set(p.device_map.values()) == {"0", "1"} and p.config["model_type"] == "qwen3"
    r = vplan(env, "plan", "Qwen/Qwen3-32B", "-o", str(out))
    assert r.returncode == 2 and "--force" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["check", "nosuch-org/nosuch-model"], "nosuch-org/nosuch-model"),
    (["check", "Qwen/Qwen3-32B", "--gpu", "X100", "--gpus-per-node", "2"], "unknown GPU type 'X100'"),
    (["check", "Qwen/Qwen3-32B", "--cluster", "/nonexistent/cluster.toml"], "vplan cluster detect"),
    (["check", "Qwen/Qwen3-32B", "--precision", "fp8"], "fp8 weights need compute capability >= 8.9"),
    (["check", "Qwen/Qwen3-32B", "--precision", "int4"], "unknown precision 'int4'"),
    (["check", "Qwen/Qwen3-32B", "--prompt-tokens", "9000", "--context", "4096"], "exceeds --context"),
    (["check", "a'; rm -rf ~ #"], "a'; rm -rf ~ #"),
    (["check", "$(touch /tmp/vplan-pwned)"], "vplan"),
])
def test_user_errors_are_one_line_without_traceback(env, args, needle):
    r = vplan(env, *args)
    assert r.returncode == 2
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("vplan: error: "), r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr
    assert not os.path.exists("/tmp/vplan-pwned")


def test_malformed_cluster_file_is_one_line(env, tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text("[partitions.gpu]\ngpu = 'A100-40GB'\ngpus_per_node = 'two'\n")
    r = vplan(env, "check", "Qwen/Qwen3-32B", "--cluster", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert 'partitions.gpu.gpus_per_node = "two": expected a whole number' in r.stderr


def test_cpu_only_plan(env, tmp_path):
    out = tmp_path / "cpu.json"
    r = vplan(env, "plan", "Qwen/Qwen3-8B", "--gpus-per-node", "0", "--node-mem", "64GB", "-o", str(out))
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["gpus"] == 0 and set(d["device_map"].values()) == {"cpu"} and d["status"] == "cpu-offload"
    assert d["host_ram_bytes"] <= 0.8 * 64e9
