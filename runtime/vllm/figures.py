"""The engine's own figures, compared with the plan: what vLLM reports about its KV cache and its weights.

Sources (vLLM 0.32.0):
- ``/metrics``, gauge ``vllm:cache_config_info``: its labels are the engine's resolved cache config, among them
  ``kv_cache_size_tokens``, ``kv_cache_max_concurrency``, ``num_gpu_blocks`` and ``block_size``
  (v1/metrics/loggers.py; the API, so a client of a job's server reads it too).
- the server's log: ``"<DEV> KV cache size: N tokens, Maximum concurrency for L tokens per request: Cx"``
  (v1/core/kv_cache_utils.py, once per engine) and, on GPU builds, ``"Model loading took X GiB memory"`` from the
  first worker of each node (v1/worker/gpu_model_runner.py, ``format_gib``: GiB rounded to 0.01). The CPU build
  logs no weight figure, so there the comparison says so.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from vplan.planner.plan.contract import Plan
from vplan.planner.units import GIB

from vplan.runtime.report import Log, fmt_bytes, stderr_log

LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
KV_LINE_RE = re.compile(r"(?P<device>[A-Z]+) KV cache size: (?P<tokens>[\d,]+) tokens, Maximum concurrency for "
                        r"(?P<len>[\d,]+) tokens per request: (?P<conc>[\d.]+)x")
LOADING_RE = re.compile(r"^(?:\s*(?P<node>\d+): )?\((?P<proc>[A-Za-z0-9_]+) pid=\d+\).*Model loading took "
                        r"(?P<gib>[\d.]+) GiB memory", re.M)
LOG_GIB_RESOLUTION_BYTES = GIB // 200  # format_gib rounds to 0.01 GiB: a reported figure is within half of that


@dataclass(frozen=True)
class RankWeights:
    node: int | None  # srun --label node index, when the log has one
    worker: str  # vLLM's process name, e.g. Worker_PP1_TP0
    pp_rank: int
    tp_rank: int
    bytes: int  # the logged GiB, in bytes


@dataclass(frozen=True)
class EngineFigures:
    version: str | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    num_blocks: int | None = None
    block_size: int | None = None
    kv_cache_memory_bytes: int | None = None  # set on the CPU build (VLLM_CPU_KVCACHE_SPACE), "None" on GPUs
    rank_weights: tuple[RankWeights, ...] = ()
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


def cache_config_info(metrics_text: str) -> dict[str, str]:
    """The labels of ``vllm:cache_config_info`` in a /metrics page ({} when it has none)."""
    for line in metrics_text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            return {k: v for k, v in LABEL_RE.findall(line[: line.rindex("}") + 1])}
    return {}


def _int(v: str | None) -> int | None:
    return int(v) if v is not None and re.fullmatch(r"\d+", v) else None


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "None") else None
    except ValueError:
        return None


def _process_ranks(proc: str) -> tuple[int, int]:
    pp = re.search(r"_PP(\d+)", proc)
    tp = re.search(r"_TP(\d+)", proc)
    return int(pp.group(1)) if pp else 0, int(tp.group(1)) if tp else 0


def engine_figures(*, metrics_text: str = "", log_text: str = "", version: str | None = None) -> EngineFigures:
    """What the engine reported, from /metrics first and its log for what the API does not give."""
    info = cache_config_info(metrics_text)
    sources = ["/metrics vllm:cache_config_info"] if info else []
    tokens, conc = _int(info.get("kv_cache_size_tokens")), _float(info.get("kv_cache_max_concurrency"))
    kv_lines = list(KV_LINE_RE.finditer(log_text))
    if kv_lines and tokens is None:
        m = kv_lines[-1]
        tokens, conc = int(m["tokens"].replace(",", "")), float(m["conc"])
        sources.append(f"log: {m.group(0)}")
    ranks = []
    for m in LOADING_RE.finditer(log_text):
        pp, tp = _process_ranks(m["proc"])
        ranks.append(RankWeights(int(m["node"]) if m["node"] else None, m["proc"], pp, tp, round(float(m["gib"]) * GIB)))
    if ranks:
        sources.append("log: Model loading took ... GiB memory")
    return EngineFigures(version=version, kv_cache_tokens=tokens, max_concurrency=conc,
                         num_blocks=_int(info.get("num_gpu_blocks")), block_size=_int(info.get("block_size")),
                         kv_cache_memory_bytes=_int(info.get("kv_cache_memory_bytes")), rank_weights=tuple(ranks),
                         sources=tuple(sources))


@dataclass(frozen=True)
class Comparison:
    what: str
    planned: float | None
    engine: float | None
    unit: str  # tokens, requests, bytes, ""
    tolerance: float = 0  # the engine's own rounding
    note: str = ""

    @property
    def verdict(self) -> str:
        if self.engine is None:
            return "not reported"
        if self.planned is None:
            return "not planned"
        diff = abs(self.engine - self.planned)
        if diff == 0:
            return "exact"
        return "within the engine's rounding" if diff <= self.tolerance else "DIFFERS"

    def line(self) -> str:
        if self.engine is None and self.planned is None:
            return f"{self.what}: {self.note}"

        def show(v):
            if v is None:
                return "-"
            if self.unit == "bytes":
                return fmt_bytes(v)
            return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}"
        note = f"; {self.note}" if self.note else ""
        return f"{self.what}: planned {show(self.planned)}, engine {show(self.engine)} ({self.verdict}{note})"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


def compare(plan: Plan, figures: EngineFigures) -> list[Comparison]:
    a = plan.vllm
    rows = [
        Comparison("KV cache tokens", a.kv_cache_tokens, figures.kv_cache_tokens, "tokens"),
        Comparison(f"requests of {a.max_model_len:,} tokens at once", a.max_concurrency, figures.max_concurrency,
                   "requests", tolerance=0.005),
        Comparison("KV block size", a.block_size, figures.block_size, "tokens"),
    ]
    planned = {(r.pp_rank, r.tp_rank): r for r in a.ranks}
    if not figures.rank_weights:
        rows.append(Comparison("weights per rank", None, None, "bytes",
                               note="not reported: this vLLM build logs no 'Model loading took' figure (the CPU build "
                                    "does not; GPU builds do)"))
    for w in figures.rank_weights:
        r = planned.get((w.pp_rank, w.tp_rank))
        where = f"node {w.node} " if w.node is not None else ""
        rows.append(Comparison(f"weights, {where}{w.worker} (PP {w.pp_rank}, TP {w.tp_rank})",
                               r.weights_bytes if r else None, w.bytes, "bytes", tolerance=LOG_GIB_RESOLUTION_BYTES,
                               note="vLLM logs GiB to 0.01"))
    return rows


@dataclass(frozen=True)
class EngineReport:
    figures: EngineFigures
    comparisons: tuple[Comparison, ...] = field(default=())

    def to_dict(self) -> dict:
        return {"figures": self.figures.to_dict(), "comparisons": [c.to_dict() for c in self.comparisons]}


def report_lines(rows: list[Comparison], figures: EngineFigures) -> list[str]:
    out = [f"[*] vLLM {figures.version or ''} figures, engine vs plan (from {'; '.join(figures.sources) or 'nothing'}):"]
    out += [f"[*]   {r.line()}" for r in rows]
    return out


def render_report(rows: list[Comparison], figures: EngineFigures, log: Log = stderr_log) -> None:
    for line in report_lines(rows, figures):
        log(line)
