"""Fuzz: real plan files (fits, int8, CPU+disk offload, CPU-only, does-not-fit, a typed custom cluster), mutated
(wrong types, signs, NaN/Infinity literals, missing and unknown keys, nested junk, other schema versions) and fed to
`vplan render-sbatch`: a one-line error or a script that passes `bash -n` with a clean #SBATCH block."""
import json
import subprocess
from functools import lru_cache

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import assert_clean, dumps_any, fuzz, mutated, run_cli
from vplan.planner.api import CheckOptions, plan_for
from vplan.planner.hardware.cluster import profile_for_gpu
from vplan.planner.plan import plan_to_dict
from vplan.planner.plan.contract import Workload
from vplan.planner.search.core import SearchOptions
from vplan.planner.slurm.profile_toml import profile_to_toml

L4_PROFILE = profile_to_toml(profile_for_gpu("L4", 1, node_mem="64GB"))  # the cluster the L4 plan was made for

PLAN_KEYS = ["status", "gpus", "nodes", "speed", "devices", "device_map", "workload", "cluster", "schema_version",
             "host_ram_bytes", "precision", "gpu_type", "model_id", "revision", "source", "speed.load_seconds",
             "workload.requests", "cluster.mem_bytes", "vllm", "quantization", "requirements", "rejection"]


@lru_cache(maxsize=None)
def base_plans() -> tuple[dict, ...]:
    opts = CheckOptions(offline=True)
    cpu = CheckOptions(search=SearchOptions(workload=Workload(context_tokens=1024, prompt_tokens=1024)), offline=True)
    out = [plan_for("Qwen/Qwen3-8B", None, opts), plan_for("meta-llama/Llama-3.3-70B-Instruct", None, opts),
           plan_for("deepseek-ai/DeepSeek-V2.5", None, opts),
           plan_for("Qwen/Qwen3-32B", profile_for_gpu("L4", 1, node_mem="64GB"), opts),
           plan_for("Qwen/Qwen3-0.6B", profile_for_gpu(None, 0, node_mem="16GB", cpus_per_node=8), cpu)]
    return tuple(plan_to_dict(p) for p in out)


@st.composite
def plan_case(draw):
    base = draw(st.sampled_from(base_plans()))
    return draw(st.sampled_from([base, None]).flatmap(lambda b: st.just(b) if b else mutated(base, PLAN_KEYS)))


@fuzz(300)
@given(plan=plan_case(), payload=st.sampled_from([["--prompt", "Hello"], ["--input", "in.jsonl", "--output", "o.jsonl"],
                                                   ["--", "python", "job.py"], []]),
       extra=st.sampled_from([[], ["--force"], ["--time", "00:10:00"], ["--requests", "100000"], ["--cluster", "l4.toml"]]))
def test_mutated_plan_files(plan, payload, extra, offline_home):
    path = offline_home / "plan.json"
    path.write_text(dumps_any(plan))
    (offline_home / "l4.toml").write_text(L4_PROFILE)
    argv = ["render-sbatch", path, *extra, *payload]
    code, out, err = run_cli(argv)
    assert_clean(argv, code, out, err)
    if code == 0:
        _script_ok(out, offline_home)


def _script_ok(text: str, where) -> None:
    head = text.split("\nset -euo pipefail", 1)[0]
    assert "\n\n#SBATCH" not in head and all(line.isprintable() for line in text.splitlines()), head
    f = where / "job.sh"
    f.write_text(text)
    r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@fuzz(60)
@given(text=st.one_of(st.text(max_size=300), st.integers(1, 100_000).map(lambda n: '{"a": ' * n + "1" + "}" * n),
                      st.sampled_from(["", "null", "[]", "{}", '{"schema_version": 2}', '{"schema_version": 1}',
                                       '{"schema_version": NaN}', '{"schema_version": 2.0}'])))
def test_plan_file_text(text, offline_home):
    path = offline_home / "plan.json"
    path.write_text(text)
    argv = ["render-sbatch", path, "--prompt", "Hello"]
    code, out, err = run_cli(argv)
    assert_clean(argv, code, out, err)
    assert code == 2 and "plan file" in err


def test_base_plans_render():
    """The unmutated plans are what the fuzz starts from: each renders, or is refused for not fitting (exit 3)."""
    import tempfile
    from pathlib import Path

    codes = {}
    for p in base_plans():
        with tempfile.TemporaryDirectory() as d:
            path, cluster = Path(d) / "p.json", Path(d) / "l4.toml"
            path.write_text(json.dumps(p))
            cluster.write_text(L4_PROFILE)
            argv = ["render-sbatch", path, "--prompt", "Hello"] + (["--cluster", cluster] if p["gpu_type"] == "L4" else [])
            code, out, err = run_cli(argv)
            assert_clean(argv, code, out, err)
            codes[(p["model_id"], p["status"])] = code
    assert codes == {("Qwen/Qwen3-8B", "fits"): 0, ("meta-llama/Llama-3.3-70B-Instruct", "fits"): 0,
                     ("deepseek-ai/DeepSeek-V2.5", "does-not-fit"): 3, ("Qwen/Qwen3-32B", "cpu-offload"): 0,
                     ("Qwen/Qwen3-0.6B", "cpu-offload"): 0}
