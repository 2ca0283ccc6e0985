"""render_sbatch / render_array: resources, refusals, quoting, golden files (no cluster needed)."""
from __future__ import annotations

import difflib
import os
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from vplan.planner.hardware.cluster import default_profile
from vplan.planner.errors import ClusterError, NoFittingPlanError, UsageError
from vplan.planner.slurm.render import render_array, render_arrays, render_sbatch
from vplan.planner.slurm.resources import SbatchOptions, auto_time_s, compute_resources, mem_request_bytes

from .conftest import GIB, GOLDEN, REFRESH_CMD, make_plan


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("VPLAN_REFRESH_GOLDEN") == "1":
        path.write_text(text)
        return
    want = path.read_text() if path.exists() else ""
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True), str(path), "rendered"))
        pytest.fail(f"{name} differs from the golden file:\n{diff}\nIf the change is intended, refresh with:\n  {REFRESH_CMD}",
                    pytrace=False)


def opts(**kw) -> SbatchOptions:
    if not kw.get("command"):
        kw.setdefault("input_path", "/work/prompts.jsonl")
        kw.setdefault("output_path", "/work/out.jsonl")
    return SbatchOptions(plan_path=kw.pop("plan_path", "/work/plans/qwen3-8b.json"), **kw)


def bash_n(text: str, tmp_path: Path) -> None:
    f = tmp_path / f"s-{uuid.uuid4().hex}.sh"
    f.write_text(text)
    r = subprocess.run(["bash", "-n", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ------------------------------------------------------------ golden files

def test_golden_job_with_setup_and_hf_home():
    prof = replace(default_profile(), hf_home="/shared/hf-cache/$USER", setup=("module load cuda/12.4", "source /opt/venvs/vplan/bin/activate"))
    check_golden("job_qwen3_8b.sh", render_sbatch(make_plan(), prof, opts()))


def test_golden_array_and_user_command():
    plans = [make_plan("Qwen/Qwen3-8B"), make_plan("meta-llama/Llama-3.1-8B-Instruct", host_ram_bytes=9 * GIB, load_s=200)]
    o = opts(plan_paths=("/work/plans/a.json", "/work/plans/b.json"), command=("python", "gen.py", "--out", "out dir/"))
    check_golden("array_two_models.sh", render_array(plans, replace(default_profile(), compute_nodes_online=True), o))


# ------------------------------------------------------------ resources

def test_memory_is_host_ram_plus_margin_never_less():
    assert mem_request_bytes(20 * GIB) == 24 * GIB  # +4 GiB floor
    assert mem_request_bytes(100 * GIB) == 110 * GIB  # +10 %
    res = compute_resources(make_plan(host_ram_bytes=int(20.3 * GIB)), default_profile(), opts())
    assert res.mem_flag == "--mem=25G" and res.mem_bytes >= mem_request_bytes(int(20.3 * GIB))


def test_memory_above_partition_is_an_error_naming_the_numbers_unless_force():
    plan = make_plan(status="cpu-offload", cpu_weights_bytes=110 * GIB, host_ram_bytes=115 * GIB)
    with pytest.raises(ClusterError) as e:
        compute_resources(plan, default_profile(), opts())
    assert "needs 115.0 GiB host RAM, 126.5 GiB with the margin, but nodes of partition 'gpu' have 119.2 GiB" in e.value.message
    res = compute_resources(plan, default_profile(), opts(force=True))
    assert res.mem_flag == "--mem=122070M" and any("WARNING" in n for n in res.notes)


def test_memory_falls_back_to_mib_when_gib_round_up_passes_the_node():
    # 108 GiB + 10 % = 118.8 GiB: 119G fits, 119.2 GiB node; 108.5 GiB -> 119.35 GiB: 120G would not, MiB does not fit either
    assert compute_resources(make_plan(host_ram_bytes=108 * GIB), default_profile(), opts()).mem_flag == "--mem=119G"
    res = compute_resources(make_plan(host_ram_bytes=int(108.3 * GIB)), default_profile(), opts())
    assert res.mem_flag.endswith("M") and res.mem_bytes <= 128 * 1000**3


def test_cpus_rule():
    big = replace(default_profile().partitions[0], cpus_per_node=64, gpus_per_node=8)
    prof = replace(default_profile(), partitions=(big,))
    assert compute_resources(make_plan(gpus=1), prof, opts()).cpus_per_task == 4
    assert compute_resources(make_plan(gpus=2), prof, opts()).cpus_per_task == 8
    assert compute_resources(make_plan(gpus=2, status="cpu-offload", cpu_weights_bytes=GIB, host_ram_bytes=8 * GIB), prof, opts()).cpus_per_task == 16
    assert compute_resources(make_plan(gpus=0, gpu_type=None), prof, opts()).cpus_per_task == 64
    assert compute_resources(make_plan(gpus=2), default_profile(), opts()).cpus_per_task == 4  # capped by the node
    with pytest.raises(ClusterError, match="outside 1..4"):
        compute_resources(make_plan(), default_profile(), opts(cpus_per_task=5))


def test_time_auto_from_speed_and_requests():
    plan = make_plan(decode=10.0, load_s=60.0)  # 1 request: 60 + 4096/2000 + 512/10 = 113.248 s
    assert auto_time_s(plan) == 60 * -(-int(113.248 * 1.5 + 600 + 1) // 60)
    assert compute_resources(plan, default_profile(), opts()).time_flag == "--time=00:13:00"
    # 1000 requests: 60 + 1000 * 53.248 = 53308 s * 1.5 + 600 = 80562 s -> 22:23:00
    assert compute_resources(plan, default_profile(), opts(requests=1000)).time_flag == "--time=22:23:00"
    assert compute_resources(plan, default_profile(), opts(time="1-00:00:00")).time_flag == "--time=1-00:00:00"


def test_time_above_maxtime_is_an_error_unless_force():
    plan = make_plan(decode=1.0)
    with pytest.raises(ClusterError) as e:
        compute_resources(plan, default_profile(), opts(requests=1000))
    assert "exceeds the MaxTime 2-00:00:00 of partition 'gpu'" in e.value.message
    with pytest.raises(ClusterError, match="--time 3-00:00:00 exceeds"):
        compute_resources(plan, default_profile(), opts(time="3-00:00:00"))
    assert compute_resources(plan, default_profile(), opts(requests=1000, force=True)).time_flag == "--time=2-00:00:00"
    with pytest.raises(UsageError):
        compute_resources(plan, default_profile(), opts(time="soon"))


def test_gpu_request_forms():
    p = make_plan(gpus=2)
    assert "#SBATCH --gres=gpu:2\n" in render_sbatch(p, default_profile(), opts())
    typed = replace(default_profile(), gres_typed=True, gres_type_name="a100")
    assert "#SBATCH --gres=gpu:a100:2\n" in render_sbatch(p, typed, opts())
    gpn = replace(typed, gpu_request="gpus-per-node")
    assert "#SBATCH --gpus-per-node=a100:2\n" in render_sbatch(p, gpn, opts())
    cpu_only = render_sbatch(make_plan(gpus=0, gpu_type=None), default_profile(), opts())
    assert "--gres" not in cpu_only and "--cpus-per-task=4" in cpu_only


def test_does_not_fit_refused_with_reason_unless_force():
    plan = make_plan(status="does-not-fit", reason="needs 150 GiB of GPU memory; the node has 2 x 39.6 GiB")
    with pytest.raises(NoFittingPlanError) as e:
        render_sbatch(plan, default_profile(), opts())
    assert "does not fit: needs 150 GiB of GPU memory; the node has 2 x 39.6 GiB" in e.value.message
    assert "WARNING (--force): the plan does not fit" in render_sbatch(plan, default_profile(), opts(force=True))


def test_wrong_gpu_type_or_count_is_a_clear_error():
    with pytest.raises(ClusterError, match="made for H100-80GB but partition 'gpu' has A100-40GB"):
        render_sbatch(make_plan(gpu_type="H100-80GB"), default_profile(), opts())
    with pytest.raises(ClusterError, match="needs 4 GPUs but nodes of partition 'gpu' have 2"):
        render_sbatch(make_plan(gpus=4), default_profile(), opts())
    with pytest.raises(UsageError, match="partition 'nope' is not in cluster profile"):
        render_sbatch(make_plan(), default_profile(), opts(partition="nope"))


@pytest.mark.parametrize("field,value,match", [
    ("model_id", "org/na me", "not a Hub repo id"),
    ("model_id", "a'; rm -rf ~ #", "not a Hub repo id"),
    ("model_id", "$(touch /tmp/x)/m", "not a Hub repo id"),
    ("revision", "main; reboot", "not a branch, tag or commit"),
])
def test_hostile_plan_fields_are_refused(field, value, match):
    with pytest.raises(UsageError, match=match):
        render_sbatch(replace(make_plan(), **{field: value}), default_profile(), opts())


@pytest.mark.parametrize("kw,match", [
    ({"partition": "gpu;id"}, "partition"),
    ({"job_name": "x y"}, "--job-name"),
    ({"constraint": "a100' && id"}, "constraint"),
    ({"log_dir": "/tmp/$(id)"}, "--log-dir"),
    ({"plan_path": "relative/plan.json"}, "absolute"),
    ({"plan_path": "/tmp/a\nb.json"}, "control characters"),
    ({"command": ("python", "x.py", "--token", "hf_" + "a" * 34)}, "token"),
    ({"command": ("env", "HF_TOKEN=abc", "python")}, "token"),
])
def test_hostile_options_are_refused(kw, match):
    with pytest.raises(UsageError, match=match):
        render_sbatch(make_plan(), default_profile(), opts(**kw))


@pytest.mark.parametrize("prof_kw,match", [
    ({"hf_home": "/x/$(touch /tmp/p)"}, "hf_home"),
    ({"hf_home": "/x/`id`"}, "hf_home"),
    ({"setup": ("export HF_TOKEN=hf_abc",)}, "token"),
])
def test_hostile_profile_values_are_refused(prof_kw, match):
    with pytest.raises(UsageError, match=match):
        render_sbatch(make_plan(), replace(default_profile(), **prof_kw), opts())


def test_token_in_environment_never_reaches_the_script(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secretsecretsecretsecretsecret1234")
    text = render_sbatch(make_plan(), default_profile(), opts())
    assert "hf_secret" not in text and "HF_TOKEN" not in text


def _run_script(text: str, sandbox: Path, marker_dir: Path) -> subprocess.CompletedProcess:
    script = sandbox / "job.sh"
    script.write_text(text)
    env = {"PATH": f"{sandbox / 'bin'}:/usr/bin:/bin", "TMPDIR": str(sandbox), "VPLAN_ARGV_FILE": str(sandbox / "argv.txt"),
           "HOME": str(sandbox)}
    r = subprocess.run(["bash", str(script)], cwd=sandbox, env=env, capture_output=True, text=True, timeout=30)
    return r


def test_hostile_paths_and_command_never_execute(sandbox, tmp_path):
    """Plan path and user command full of shell syntax: the script runs them as data, never as code."""
    tag = uuid.uuid4().hex
    markers = [Path(f"/tmp/vplan-marker-{tag}-{i}") for i in range(4)]
    plan_path = f"/work/a'; touch {markers[0]} #/$(touch {markers[1]})/`touch {markers[2]}`.json"
    text = render_sbatch(make_plan(), default_profile(), opts(plan_path=plan_path))
    bash_n(text, tmp_path)
    r = _run_script(text, sandbox, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (sandbox / "argv.txt").read_text().splitlines() == ["run", plan_path, "--input", "/work/prompts.jsonl",
                                                               "--output", "/work/out.jsonl"]
    cmd = ("python3", "-c", "import os,sys; print(os.environ['VPLAN_PLAN']); print(sys.argv[1:])",
           f"$(touch {markers[3]})", "a'b", '"; touch ' + str(markers[3]) + "; #", "*", "~", "\\", "$HOME")
    text2 = render_sbatch(make_plan(), default_profile(), opts(plan_path=plan_path, command=cmd))
    bash_n(text2, tmp_path)
    r2 = _run_script(text2, sandbox, tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert plan_path in r2.stdout and repr(list(cmd[3:])) in r2.stdout
    assert not any(m.exists() for m in markers)
    assert not list(sandbox.glob("vplan-offload-*"))  # the trap removed the offload folder


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40),
       args=st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20), max_size=4))
def test_property_any_path_and_args_pass_bash_n_and_arrive_verbatim(path, args, sandbox, tmp_path):
    plan_path = "/" + path
    text = render_sbatch(make_plan(), default_profile(),
                         opts(plan_path=plan_path, command=("python3", "-c", "import json,os,sys; print(json.dumps([os.environ['VPLAN_PLAN']] + sys.argv[1:]))", *args)))
    bash_n(text, tmp_path)
    r = _run_script(text, sandbox, tmp_path)
    assert r.returncode == 0, r.stderr
    import json
    assert json.loads(r.stdout.strip().splitlines()[-1]) == [plan_path, *args]


# ------------------------------------------------------------ arrays

def test_array_selects_plan_by_task_id(sandbox, tmp_path):
    plans = [make_plan("Qwen/Qwen3-8B"), make_plan("Qwen/Qwen3-0.6B", host_ram_bytes=30 * GIB, load_s=3000)]
    paths = ("/p/first plan.json", "/p/second'$(x).json")
    text = render_array(plans, default_profile(), SbatchOptions(plan_paths=paths, input_path="/work/in.jsonl", output_path="/work/out.jsonl"))
    assert "#SBATCH --array=0-1\n" in text and "#SBATCH --mem=34G\n" in text  # the largest task: 30 GiB + 4 GiB
    assert "%x-%A_%a.out" in text and "--time=01:26:00" in text
    bash_n(text, tmp_path)
    for i, p in enumerate(paths):
        script = sandbox / "arr.sh"
        script.write_text(text)
        env = {"PATH": f"{sandbox / 'bin'}:/usr/bin:/bin", "TMPDIR": str(sandbox), "VPLAN_ARGV_FILE": str(sandbox / "argv.txt"),
               "SLURM_ARRAY_TASK_ID": str(i)}
        r = subprocess.run(["bash", str(script)], cwd=sandbox, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert (sandbox / "argv.txt").read_text().splitlines() == ["run", p, "--input", "/work/in.jsonl", "--output",
                                                                   f"/work/out.{i}.jsonl"]  # one results file per task
    r = subprocess.run(["bash", str(sandbox / "arr.sh")], cwd=sandbox, capture_output=True, text=True,
                       env={"PATH": f"{sandbox / 'bin'}:/usr/bin:/bin", "TMPDIR": str(sandbox)})
    assert r.returncode != 0 and "not an array task" in r.stderr


def test_arrays_split_by_gpu_shape():
    plans = [make_plan("a/one"), make_plan("a/two", gpus=2), make_plan("a/three")]
    o = SbatchOptions(plan_paths=("/p/1.json", "/p/2.json", "/p/3.json"), prompt="Hello")
    with pytest.raises(UsageError, match="different GPU shapes"):
        render_array(plans, default_profile(), o)
    out = render_arrays(plans, default_profile(), o)
    assert [(g.suffix, g.indices) for g, _ in out] == [("-gpu-1gpu", (0, 2)), ("-gpu-2gpu", (1,))]
    assert "--gres=gpu:1" in out[0][1] and "/p/3.json" in out[0][1] and "/p/2.json" not in out[0][1]
    assert "--array=0-0" in out[1][1] and "--gres=gpu:2" in out[1][1]


def test_array_refuses_a_does_not_fit_task():
    plans = [make_plan(), make_plan("x/big", status="does-not-fit", reason="too big")]
    with pytest.raises(NoFittingPlanError, match="x/big does not fit: too big"):
        render_array(plans, default_profile(), SbatchOptions(plan_paths=("/a.json", "/b.json"), prompt="Hello"))
