"""Fuzz: command lines. Every command with flags drawn from its own options (good values, edge values, wrong types,
control characters, huge numbers, missing values, unknown flags), run in-process: exit 0/2/3 with one-line errors,
and every text answer of `check` fits 80 columns."""
import json
from functools import lru_cache

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import REPO, assert_clean, assert_sane_report, assert_text_fits, fuzz, run_cli
from vplan.planner.api import CheckOptions, plan_for
from vplan.planner.plan import plan_to_dict
from vplan.planner.source import catalog

MODELS = catalog.list_ids()
NUMS = ["0", "1", "2", "-1", "8", "17", "4096", "131072", "10000001", "99999999999999999999", "1.5", "x", "", "nan",
        "1e3", " 4", "4\n"]
SIZES = ["0", "256", "0GB", "1GB", "2GB", "64GiB", "256GB", "1PB", "2PB", "1e30GB", "-5GB", "12.5G", "999999999999PB",
         "GB", "abc", "128 GB", "64G\n"]
TEXT = ["", " ", "a\nb", "abc\n", "x" * 300, "$(id)", "a'b", "é", "\t", "gpu", "main", "A100", "h100", "nf4", "int4"]
FLAG_VALUES = {
    "--context": NUMS, "--prompt-tokens": NUMS, "--max-new-tokens": NUMS, "--batch": NUMS, "--requests": NUMS,
    "--attn": ["sdpa", "eager", "flash", "", "SDPA"], "--gpu": ["H100", "A100-40GB", "l4", "V100", "X100", "", "h200\n"],
    "--gpus-per-node": NUMS, "--node-mem": SIZES, "--cpus-per-node": NUMS, "--partition": TEXT + ["gpu", "H100-80GBx4"],
    "--precision": ["bf16", "fp16", "fp32", "fp8", "mxfp4", "int8", "nf4", "int4", "gptq-int4", "bnb-nf4", "FP16",
                    "", "4bit"],
    "--max-gpus": NUMS, "--min-tokens-per-s": NUMS + ["1e300", "inf", "-inf"],
    "--transformers": ["5.24", "5.23", "5.24.0", "4.46", "6", "5", "x.y", "", "5.24.0.dev0", "99999999999999999999.1"],
    "--revision": TEXT, "--cluster": ["missing.toml", "cluster.toml", ".", "/dev/null"],
    "--engine": ["transformers", "vllm", "all", "VLLM", ""], "--nodes": NUMS,
}
FLAGS = ["--no-offload", "--no-disk", "--mxfp4-kernels", "--offline", "--json", "--explain", "--hardware", "--all", "--bogus"]
RENDER_VALUES = {
    "--time": ["auto", "00:10:00", "0", "1-00:00:00", "99-00:00:00", "x", "", "10\n"], "--requests": NUMS,
    "--cpus-per-task": NUMS, "--job-name": TEXT, "--constraint": TEXT + ["a100&ib", "[a|b]"],
    "--log-dir": ["logs", "a b", "/proc/x", "", "logs\n", "plan.json"], "--partition": TEXT,
    "--prompt": TEXT, "--input": ["in.jsonl", "missing.jsonl", "", "."], "--output": ["out.jsonl", "", "."],
    "-o": ["job.sh", "sub/job.sh", ".", "plan.json", "/proc/x/job.sh", ""], "--cluster": ["cluster.toml", "missing.toml"],
}


VALID = {  # values a user means: most draws use these, so the hostile one in a command line is reached
    "--context": ["512", "4096", "32768", "131072"], "--prompt-tokens": ["128", "512"], "--max-new-tokens": ["16", "512"],
    "--batch": ["1", "4", "64"], "--requests": ["1", "1000"], "--attn": ["sdpa", "eager"],
    "--gpu": ["H100", "A100-40GB", "L4", "V100", "H200", "L40S"], "--gpus-per-node": ["0", "1", "4", "8"],
    "--node-mem": ["64GB", "256GB", "1TB", "32GiB"], "--cpus-per-node": ["4", "64"], "--precision": ["bf16", "fp16",
    "fp8", "int8", "nf4", "mxfp4"], "--max-gpus": ["1", "2"], "--min-tokens-per-s": ["0", "0.1", "5"],
    "--transformers": ["5.23", "5.24"], "--time": ["auto", "02:00:00"], "--cpus-per-task": ["2", "8"],
    "--job-name": ["myjob"], "--constraint": ["a100"], "--log-dir": ["logs"], "--prompt": ["Hello"], "-o": ["job.sh"],
    "--cluster": ["cluster.toml"], "--partition": ["gpu"], "--engine": ["vllm", "all"], "--nodes": ["1", "2", "4"],
}


def _pairs(values: dict, flags: list[str]):
    names = sorted(values)
    good = st.sampled_from([f for f in names if f in VALID]).flatmap(lambda f: st.sampled_from(VALID[f]).map(lambda v: [f, v]))
    bad = st.sampled_from(names).flatmap(
        lambda f: st.one_of(st.sampled_from(values[f]), st.text(max_size=8)).map(lambda v: [f, v]))
    alone = st.sampled_from(flags + names).map(lambda f: [f])  # a switch, or a flag without its value
    return st.lists(st.one_of(good, good, good, bad, alone), max_size=4).map(lambda xs: [a for x in xs for a in x])


@lru_cache(maxsize=None)
def _plan_text() -> str:
    return json.dumps(plan_to_dict(plan_for("Qwen/Qwen3-0.6B", None, CheckOptions(offline=True))))


def _workspace(home) -> None:
    (home / "plan.json").write_text(_plan_text())
    (home / "cluster.toml").write_text('[partitions.gpu]\ngpu = "A100-40GB"\ngpus_per_node = 2\nmem = "128GB"\n')
    (home / "in.jsonl").write_text('{"id": 1, "prompt": "hi"}\n')


models = st.lists(st.one_of(st.sampled_from(MODELS), st.sampled_from(["llama-70b", "Qwen3-32b", "org/none", "a'; b",
                                                                         "..", "/nonexistent", "./x", "", "-"])),
                  min_size=0, max_size=3)


@fuzz(300)
@given(cmd=st.sampled_from(["check", "check", "plan"]), names=models, flags=_pairs(FLAG_VALUES, FLAGS))
def test_check_and_plan_flags(cmd, names, flags, offline_home):
    _workspace(offline_home)
    argv = [cmd, *names[: 1 if cmd == "plan" else 3], *flags] + (["-o", "p.json", "--force"] if cmd == "plan" else [])
    code, out, err = run_cli(argv)
    assert_clean(argv, code, out, err)
    if code == 0 and cmd == "check":
        if "--json" in argv:
            assert_sane_report(out)
        else:
            assert_text_fits(out)


@fuzz(300)
@given(plans=st.one_of(st.just(["plan.json"]), st.just(["plan.json"]), st.just(["plan.json", "plan.json", "--array"]),
                       st.lists(st.sampled_from(["plan.json", "missing.json", ".", "in.jsonl"]), max_size=2)),
       flags=_pairs(RENDER_VALUES, ["--array", "--force", "--bogus"]),
       work=st.sampled_from([[], ["--prompt", "Hi"], ["--input", "in.jsonl", "--output", "out.jsonl"]]),
       tail=st.sampled_from([[], [], ["--"], ["--", "python", "job.py"], ["--", "$(id)", "a\nb"]]))
def test_render_sbatch_flags(plans, flags, work, tail, offline_home):
    _workspace(offline_home)
    argv = ["render-sbatch", *plans, *work, *flags, *tail]
    code, out, err = run_cli(argv)
    assert_clean(argv, code, out, err)


@fuzz(100)
@given(argv=st.one_of(
    st.lists(st.sampled_from(["models", "gpus", "--json", "--help", "-h", "cluster", "detect", "--version", "--bogus",
                              "--scontrol-file", "--sinfo-file", "in.jsonl", "plan.json", "-o", "c.toml", "--name",
                              "x y", "--force", "help"]), max_size=5),
    st.lists(st.text(max_size=10), max_size=4)))
def test_other_commands(argv, offline_home):
    _workspace(offline_home)
    code, out, err = run_cli(argv)
    assert_clean(argv or ["vplan"], code, out, err)
    if code == 0 and argv[:1] in (["models"], ["gpus"]) and "--help" not in argv and "-h" not in argv:
        if "--json" in argv:
            json.loads(out)
        else:
            assert_text_fits(out)
