"""The fuzz harness: `vplan` run in-process (vplan.planner.cli.main.main, SystemExit caught), a watchdog for hangs,
mutation strategies over real inputs, and the checks every answer must pass.

An answer is clean when: the exit code is one a user can get (0 ok, 2 usage, 3 nothing fits), stderr has no
"internal error" and nothing prints a traceback, the run ends well within the watchdog's limit, and every plan it
prints or writes is sane (whole-number bytes, finite numbers, active <= total parameters, a runnable plan within
its GPUs and the node's RAM).
"""
from __future__ import annotations

import copy
import io
import json
import math
import signal
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from vplan.planner.cli.main import main
from vplan.planner.model.validate import COMMON, RULES
from vplan.planner.source import catalog

REPO = Path(__file__).resolve().parents[2]
HANG_S = 60  # a run this long is a hang (normal runs take milliseconds); not a timing assertion
USER_EXITS = {0, 2, 3}
COMMANDS = ("check", "plan", "render-sbatch", "models", "gpus", "cluster")
# Bounded so the whole folder stays around a minute on CI's 2 cores; VPLAN_FUZZ_EXAMPLES scales it up locally.
FUZZ = settings(deadline=None, database=None, derandomize=False, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])


def fuzz(examples: int):
    """The fuzz settings with ``examples`` examples (times VPLAN_FUZZ_EXAMPLES, default 1)."""
    import os

    return settings(FUZZ, max_examples=examples * int(os.environ.get("VPLAN_FUZZ_EXAMPLES", "1")))


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so vplan's own `except Exception` cannot swallow it."""


@contextmanager
def watchdog(seconds: float = HANG_S):
    def fire(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run_cli(argv) -> tuple[int, str, str]:
    """`vplan ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with watchdog(), redirect_stdout(out), redirect_stderr(err):
        try:
            main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def assert_clean(argv, code: int, out: str, err: str) -> None:
    from hypothesis import event
    from hypothesis.control import currently_in_test_context

    if currently_in_test_context():
        event(f"{argv[0] if argv and argv[0] in COMMANDS else 'other'}: exit {code}")  # --hypothesis-show-statistics shows how the answers spread
    what = f"vplan {' '.join(map(repr, argv))}\nexit {code}\nstderr: {err[-2000:]}"
    assert "internal error" not in err, what
    assert "Traceback" not in err and "Traceback" not in out, what
    assert code in USER_EXITS, what
    lines = [x for x in err.splitlines() if x.startswith("vplan: error:")]
    if code == 2 or (code == 3 and "(status does-not-fit)" not in err):  # `plan` writes a does-not-fit plan, exit 3
        assert len(lines) == 1, what  # one line that says what to do
    else:
        assert not lines, what


# ------------------------------------------------------------------------------------------------- plans
def _whole(v, where: str) -> None:
    assert isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{where} = {v!r} is not whole bytes"


def _finite(v, where: str) -> None:
    assert isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0, f"{where} = {v!r}"


def assert_sane_summary(p: dict, where: str, mem_bytes: int | None = None) -> None:
    """One plan of `check --json` (models[].plan or an alternative)."""
    for k, v in p.items():
        for i, x in enumerate(v if isinstance(v, list) else [v]):
            if k.endswith("_bytes") and x is not None:
                _whole(x, f"{where}.{k}[{i}]")
        if k.endswith(("_per_s", "_seconds", "gpu_hours")):
            _finite(v, f"{where}.{k}")
    for i, d in enumerate(p["gpu_breakdown"]):
        for k, v in d.items():
            if k.endswith("_bytes"):
                _whole(v, f"{where}.gpu_breakdown[{i}].{k}")
        if p["status"] != "does-not-fit":
            used = d["weights_bytes"] + d["kv_cache_bytes"] + d["activation_bytes"] + d["overhead_bytes"]
            assert used <= d["capacity_bytes"], f"{where}: {p['status']} but GPU {i} over capacity"
    if p["status"] != "does-not-fit" and mem_bytes is not None:
        assert p["host_ram_bytes"] <= mem_bytes, f"{where}: {p['status']} but host RAM above the node's"


def assert_sane_report(text: str) -> None:
    d = json.loads(text)  # valid JSON: no NaN, no Infinity
    mem = d["cluster"]["mem_bytes"]
    for m in d["models"]:
        for k in ("params_total", "params_active", "checkpoint_bytes", "kv_bytes_per_token", "kv_cache_bytes"):
            _whole(m[k], f"{m['model']}.{k}")
        assert m["params_active"] <= m["params_total"], f"{m['model']}: active above total"
        assert_sane_summary(m["plan"], f"{m['model']}.plan", mem)
        keys = set()
        for i, a in enumerate(m["alternatives"]):
            assert_sane_summary(a, f"{m['model']}.alternatives[{i}]", mem)
            key = (a["precision"], a["gpus"], a["status"], a["rejection"], tuple(a["gpu_bytes"]), a["cpu_bytes"],
                   a["disk_bytes"])
            assert key not in keys, f"{m['model']}: alternative {key} repeated"
            keys.add(key)


def assert_text_fits(out: str, width: int = 80) -> None:
    """Every line within ``width``, except one that holds a single word too long for any line (a 300-character
    --revision echoed in the next-step command cannot be broken)."""
    wide = [line for line in out.splitlines() if len(line) > width and max(map(len, line.split())) <= width - 8]
    assert not wide, f"{len(wide)} line(s) wider than {width}: {wide[0]!r}"


# ------------------------------------------------------------------------------------------------- inputs
def catalog_configs() -> dict[str, dict]:
    out = {mid: catalog.load(mid)["config"] for mid in catalog.list_ids()}
    for f in sorted((REPO / "tests" / "fixtures" / "configs").glob("*.json")):
        out[f.stem] = json.loads(f.read_text())
    return out


RULE_KEYS = sorted({k for r in COMMON for k in r.keys} | {k for rules in RULES.values() for r in rules for k in r.keys}
                   | {"quantization_config.bits", "quantization_config.quant_method", "quantization_config.group_size",
                      "rope_scaling.factor", "rope_parameters.partial_rotary_factor", "layer_types"})

SPECIAL_INTS = [0, -1, 1, 2, 3, 7, 8, 127, 1024, 1025, 100_000, 2**31, 2**63, 10**30, -(2**40)]
SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.5, 1e-300, 1e308, -2.5]


def deep(depth: int, leaf=0):
    v = leaf
    for _ in range(depth):
        v = {"a": v} if depth % 2 else [v]
    return v


scalars = st.one_of(
    st.sampled_from(SPECIAL_INTS), st.integers(-(2**70), 2**70), st.integers(-3, 5000),
    st.sampled_from(SPECIAL_FLOATS), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "32", "two", "bfloat16", "full_attention", "sliding_attention", "gptq", "fp8", "none", "\n",
                     "a\x00b", "é"]),
    st.text(max_size=12), st.booleans(), st.none(),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=6),
    st.dictionaries(st.text(max_size=6), scalars, max_size=4),
    st.integers(30, 600).map(deep),
    st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                 max_leaves=12),
)


def paths_of(v, prefix=()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(v, dict):
        for k, x in v.items():
            out += paths_of(x, prefix + (k,))
    elif isinstance(v, list) and len(v) <= 8:
        for i, x in enumerate(v):
            out += paths_of(x, prefix + (i,))
    return out


def _parent(root, path):
    node = root
    for k in path[:-1]:
        node = node[k]
    return node


def _scale(v, factor):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return v
    return type(v)(v * factor) if isinstance(v, int) else v * factor


@st.composite
def mutated(draw, base: dict, extra_keys=()):
    """``base`` with 1-3 edits: a value replaced (any JSON type, NaN, huge, deep), scaled, deleted, or a key added."""
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(d)
        op = draw(st.sampled_from(["replace", "replace", "scale", "delete", "add"]))
        if op == "add" or not paths:
            key = draw(st.sampled_from(list(extra_keys) or ["x"]) | st.text(min_size=1, max_size=8))
            parts = tuple(key.split(".")) if isinstance(key, str) else (key,)
            node = d
            for k in parts[:-1]:
                if not isinstance(node.get(k) if isinstance(node, dict) else None, dict):
                    if isinstance(node, dict):
                        node[k] = {}
                    else:
                        break
                node = node[k]
            if isinstance(node, dict):
                node[parts[-1]] = draw(values)
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(d, path)
        if op == "delete":
            if isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent.pop(path[-1])
        elif op == "scale":
            parent[path[-1]] = _scale(parent[path[-1]], draw(st.sampled_from([-1, 0, 2, 1000, 10**9, 0.5, 1.5])))
        else:
            parent[path[-1]] = draw(values)
    return d


def dumps_any(v) -> str:
    """JSON as a careless writer would leave it: NaN and Infinity literals included."""
    return json.dumps(v, allow_nan=True, default=str)
