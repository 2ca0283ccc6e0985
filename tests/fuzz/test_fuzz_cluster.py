"""Fuzz: cluster profiles (the default profile, `cluster detect` outputs, the docs' two-partition example with a custom
GPU), mutated as TOML tables (types, signs, NaN/inf, huge, missing, unknown keys, strings where lists go) or as raw
text, used by `vplan check --cluster` and `vplan render-sbatch --cluster`."""
import json
import math
import tomllib
from functools import lru_cache

from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.harness import REPO, assert_clean, assert_sane_report, fuzz, mutated, run_cli
from vplan.planner.api import CheckOptions, plan_for
from vplan.planner.hardware.cluster import default_profile
from vplan.planner.plan import write_plan
from vplan.planner.slurm.detect import detect
from vplan.planner.slurm.profile_toml import PARTITION_KEYS, TOP_KEYS, profile_to_toml

DOCS_EXAMPLE = """
name = "mycluster"
default_partition = "a100"
gres_typed = true
hf_home = "/shared/hf-cache"
setup = ["module load cuda/12.4", "source ~/venvs/vplan/bin/activate"]
storage_gb_per_s = 2.5

[gpus.RTX6000Ada]
memory = "48GB"
compute_capability = "8.9"
hbm_gb_per_s = 960
aliases = ["rtx6000ada"]

[partitions.a100]
gpu = "A100-80GB"
gpus_per_node = 4
cpus_per_node = 64
mem = "512GB"
max_time = "2-00:00:00"
constraint = "a100&ib"

[partitions.ada]
gpu = "RTX6000Ada"
gpus_per_node = 8
mem = "1TB"
scratch = "3.5TB"
"""


@lru_cache(maxsize=None)
def bases() -> tuple[dict, ...]:
    fx = REPO / "tests" / "fixtures" / "slurm"
    texts = [profile_to_toml(default_profile()), DOCS_EXAMPLE,
             detect((fx / "typed_scontrol.txt").read_text(), (fx / "typed_sinfo.txt").read_text(), name="typed"),
             detect((fx / "big_scontrol.txt").read_text(), (fx / "big_sinfo.txt").read_text(), name="big")]
    return tuple(tomllib.loads(t) for t in texts)


def _value(v, depth: int = 0) -> str | None:
    if depth > 100:  # deeper values are written as raw text below, not by recursion
        return "[]"
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(x for x in (_value(y, depth + 1) for y in v) if x is not None) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {x}" for k, x in ((k, _value(y, depth + 1)) for k, y in v.items())
                               if x is not None) + "}"
    return json.dumps(str(v))


def to_toml(d: dict, prefix: str = "", depth: int = 0) -> str:
    """Scalars and lists first, then one [table] per dict (nested ones by dotted path): what tomllib reads back.
    Tables nested deeper than 20 are written inline (and inline values are cut at 100 levels)."""
    head, tables = [], []
    for k, v in d.items():
        key = json.dumps(str(k))
        nested = isinstance(v, dict) and (v and all(isinstance(x, dict) for x in v.values()) or prefix)
        if nested and depth < 20:
            tables.append((f"{prefix}.{key}" if prefix else key, v))
        elif (x := _value(v)) is not None:
            head.append(f"{key} = {x}")
    out = "\n".join(head) + "\n"
    for name, t in tables:
        if all(isinstance(x, dict) for x in t.values()) and t:
            out += to_toml(t, name, depth + 1)
        else:
            out += f"\n[{name}]\n" + to_toml(t, "", depth + 1)
    return out


@st.composite
def profile_text(draw):
    base = draw(st.sampled_from(bases()))
    d = draw(st.sampled_from([base, None]).flatmap(lambda b: st.just(b) if b else mutated(
        base, [*TOP_KEYS, *(f"partitions.gpu.{k}" for k in PARTITION_KEYS), "gpus.X.memory", "partitions.p.gpu"])))
    text = to_toml(d)
    if draw(st.integers(0, 9)) == 0:  # raw text damage: a cut, or junk inserted
        i = draw(st.integers(0, len(text)))
        junk = ["", "[", "]]", "=", '"', "\n[partitions]\n", "\x00", "= = =", "\nx = " + "[" * 5000 + "]" * 5000 + "\n"]
        text = text[:i] + draw(st.sampled_from(junk)) + text[i:]
    return text


@lru_cache(maxsize=None)
def small_plan() -> dict:
    from vplan.planner.plan import plan_to_dict

    return plan_to_dict(plan_for("Qwen/Qwen3-0.6B", None, CheckOptions(offline=True)))


@fuzz(400)
@given(text=profile_text(), render=st.booleans(), partition=st.sampled_from([None, None, None, "gpu", "a100", "ada", "x"]))
def test_mutated_cluster_profiles(text, render, partition, offline_home):
    path = offline_home / "cluster.toml"
    path.write_text(text)
    part = ["--partition", partition] if partition else []
    if render:
        from vplan.planner.plan import plan_from_dict

        plan = write_plan(plan_from_dict(small_plan()), offline_home / "p.json")
        argv = ["render-sbatch", plan, "--cluster", path, "--prompt", "Hello", *part]
    else:
        argv = ["check", "Qwen/Qwen3-0.6B", "--cluster", path, "--json", *part]
    code, out, err = run_cli(argv)
    assert_clean(argv, code, out, err)
    if code == 0 and not render:
        assert_sane_report(out)


def test_bases_are_valid_profiles(offline_home):
    for b in bases():
        path = offline_home / "c.toml"
        path.write_text(to_toml(b))
        code, out, err = run_cli(["check", "Qwen/Qwen3-0.6B", "--cluster", path, "--json"])
        assert code == 0, err
