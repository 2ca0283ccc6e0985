"""Renderings that only vLLM plans and engine comparisons need (kept apart from display.py's tables)."""
from __future__ import annotations

from vplan.planner.cli.cells import short_names
from vplan.planner.cli.layout import Column, fit, out
from vplan.planner.plan.contract import Plan
from vplan.planner.units import GIB


def _g(n: int) -> str:
    return f"{n / GIB:.1f}"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def shape_label(p: Plan) -> str:
    """'2 x A100-40GB, TP 2' or '7 nodes x 2 x A100-40GB, TP 2 x PP 7'; transformers: '2 x GPU'."""
    if not p.gpus:
        return "CPU"
    where = (f"{p.nodes} nodes x " if p.nodes > 1 else "") + f"{p.gpus} x {p.gpu_type}"
    if p.vllm is None:
        return where
    v = p.vllm
    return where + f", TP {v.tensor_parallel_size}" + (f" x PP {v.pipeline_parallel_size}" if v.pipeline_parallel_size > 1 else "")


def model_cell(p: Plan) -> str:
    return p.model_id + (f" ({p.engine})" if p.engine != "transformers" else "")


def gpus_cell(p: Plan) -> str:
    """GPUs per node, with the node count when there are several: '7x2'."""
    if not p.gpus:
        return "-"
    return f"{p.nodes}x{p.gpus}" if p.nodes > 1 else str(p.gpus)


def gpu_cell(p: Plan) -> str:
    """Per-GPU GiB: every GPU when there are few, else the largest with the count."""
    gpus = p.gpu_devices
    if len(gpus) <= 4:
        return " / ".join(_g(d.total_bytes) for d in gpus)
    return f"{len(gpus)} x <= {_g(max(d.total_bytes for d in gpus))}"


def print_ranks(con, p: Plan, bar=None) -> None:
    """One line per pipeline stage (its TP ranks hold the same bytes), then the pool and the engine arguments."""
    v = p.vllm
    stages: dict[int, list] = {}
    for r, d in zip(v.ranks, p.gpu_devices):
        stages.setdefault(r.pp_rank, []).append((r, d))
    for stage, members in stages.items():
        r, d = members[0]
        nodes = sorted({m.node for m, _ in members})
        where = f"stage {stage} (layers {r.layers[0]}-{r.layers[-1]}, node {','.join(map(str, nodes))}, " \
                f"{len(members)} GPU{'s' if len(members) > 1 else ''})" if v.pipeline_parallel_size > 1 else \
                (f"each of {len(members)} GPUs" if len(members) > 1 else "GPU 0")
        out(con, f"{where}: {_g(d.total_bytes)} of {_g(d.capacity_bytes)} GiB = weights {_g(d.weights_bytes)} + KV "
                 f"{_g(d.kv_cache_bytes)} + profiling peak {_g(d.activation_bytes)} + context/NCCL/graphs "
                 f"{_g(d.overhead_bytes)}")
        if bar is not None:
            con.print("         " + bar(d))
    q = f" --quantization {v.quantization}" if v.quantization else ""
    out(con, f"vLLM {v.version}: KV cache {v.kv_cache_tokens:,} tokens, {v.max_concurrency:.2f} requests of "
             f"{v.max_model_len:,} tokens at once; --tensor-parallel-size {v.tensor_parallel_size} "
             f"--pipeline-parallel-size {v.pipeline_parallel_size}{q} --max-model-len {v.max_model_len} "
             f"--block-size {v.block_size} --max-num-seqs {v.max_num_seqs} --max-num-batched-tokens "
             f"{v.max_num_batched_tokens} --gpu-memory-utilization {v.gpu_memory_utilization}")


def speed_line(p: Plan) -> str:
    s = p.speed
    line = (f"  expect ~{s.decode_tokens_per_s:.1f} tokens/s per sequence, ~{s.throughput_tokens_per_s:.0f} tokens/s "
            f"for the job, ~{s.prefill_tokens_per_s:.0f} tokens/s prefill, load ~{s.load_seconds:.0f} s")
    if p.workload.requests > 1:
        sec = s.job_seconds(p.workload.requests)
        line += f"; {p.workload.requests:,} requests in ~{_hours(sec)}, {sec * p.gpus * p.nodes / 3600:.1f} GPU-hours"
    return line


def _setup(p: Plan | None, shape: bool = True) -> str:
    """'bf16 2xA100-40GB', 'bf16 14xA100-40GB TP2 PP7' (all GPUs of the job; without ``shape``: 'bf16'), or the
    status when it does not run."""
    if p is None:
        return "-"
    if not p.fits:
        return p.status
    if not shape:
        return p.precision
    s = f"{p.precision} {p.gpus * p.nodes}x{p.gpu_type}"
    if p.vllm is not None:
        s += f" TP{p.vllm.tensor_parallel_size}" + (f" PP{p.vllm.pipeline_parallel_size}"
                                                      if p.vllm.pipeline_parallel_size > 1 else "")
    return s


def _job(p: Plan | None) -> tuple[float, float] | None:
    """(job seconds, GPU-hours) of a plan that runs."""
    if p is None or not p.fits:
        return None
    sec = p.speed.job_seconds(p.workload.requests)
    return sec, sec * p.gpus * p.nodes / 3600


def print_jobs(con, report) -> None:
    """Both engines side by side (or one engine's job times), with the experiment's GPU-hours per engine; fits the
    terminal like the main table (layout.fit: the throughput, then the job time, then the shapes give way first)."""
    engines = list(dict.fromkeys(r.plan.engine for r in report.results))
    if len(engines) < 2 and report.options.search.workload.requests <= 1:
        return
    wl = report.options.search.workload
    by_model: dict[str, dict[str, Plan]] = {}
    for r in report.results:
        by_model.setdefault(r.spec.model_id, {})[r.plan.engine] = r.plan
    short = short_names(list(by_model))
    rows = [(short[m], plans) for m, plans in by_model.items()]
    totals = {e: sum(j[1] for _, plans in rows if (j := _job(plans.get(e)))) for e in engines}
    rows.append(("experiment", None))

    def cols(e: str) -> list[Column]:
        job = lambda r: None if r[1] is None else _job(r[1].get(e))  # noqa: E731
        prec = Column(e, lambda r: "" if r[1] is None else _setup(r[1].get(e), shape=False))
        return [
            Column(f"{e} setup", lambda r: "" if r[1] is None else _setup(r[1].get(e)), priority=1, fallback=prec),
            Column("job tok/s", lambda r: "" if job(r) is None else f"{r[1][e].speed.throughput_tokens_per_s:,.0f}",
                   priority=3, justify="right"),
            Column("job", lambda r: "" if job(r) is None else _hours(job(r)[0]), priority=2, justify="right"),
            Column("GPU-h", lambda r: f"{totals[e]:,.1f}" if r[1] is None else
                   ("-" if job(r) is None else f"{job(r)[1]:,.1f}"), justify="right",
                   style=lambda r: "bold" if r[1] is None else ""),
        ]

    def faster(r) -> str:
        if r[1] is None:
            return ""
        ok = [p for p in r[1].values() if p.fits]
        return min(ok, key=lambda p: p.speed.job_seconds(p.workload.requests)).engine if ok else "-"

    columns = [Column("model", lambda r: r[0], style=lambda r: "bold" if r[1] is None else "")]
    for e in engines:
        columns += cols(e)
    if len(engines) > 1:
        columns.append(Column("faster", faster))
    con.print()
    con.print(fit(columns, rows, con.width, title=f"the job: {wl.requests:,} requests of {wl.prompt_tokens:,} prompt + "
                                                   f"{wl.max_new_tokens:,} new tokens"))
