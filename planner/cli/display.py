"""Human renderings: the check table (fits the terminal: compact columns, details below), the hardware matrix, the
GPU and model catalogs. Memory in tables is GiB (2^30 bytes), labelled; ``--json`` is the contract, not this."""
from __future__ import annotations

from vplan.planner.cli import details, display_vllm
from vplan.planner.cli.cells import STATUS_STYLE, g, gpu_cell, load_cell, offload_cell, params_text, short_names, speed_cell
from vplan.planner.cli.layout import Column, console, fit
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.units import GIB

def check_columns(results) -> list[Column]:
    """The check table's columns, most important first; an engine adds its cells here."""
    short = short_names([r.spec.model_id for r in results])
    engine = {r.plan.engine: "" for r in results}
    tag = (lambda r: f" ({r.plan.engine})") if len(engine) > 1 or "transformers" not in engine else (lambda r: "")
    model_short = Column("model", lambda r: short[r.spec.model_id] + tag(r))
    return [
        Column("model", lambda r: r.spec.model_id + tag(r), priority=5, fallback=model_short),
        Column("status", lambda r: r.plan.status, style=lambda r: STATUS_STYLE[r.plan.status]),
        Column("GPUs x GiB", lambda r: gpu_cell(r.plan), justify="right"),
        Column("precision", lambda r: r.plan.precision),
        Column("tok/s", lambda r: speed_cell(r.plan), priority=1, justify="right"),
        Column("cpu/disk GiB", lambda r: offload_cell(r.plan), priority=3, justify="right"),
        Column("load", lambda r: load_cell(r.plan), priority=4, justify="right"),
        Column("params", lambda r: params_text(r.spec), priority=6, justify="right"),
        Column("ckpt GiB", lambda r: f"{g(r.spec.checkpoint_bytes)} {r.spec.checkpoint_dtype_label}", priority=7),
        Column("KV KiB/tok", lambda r: f"{r.plan.kv_bytes_per_token / 1024:.0f}", priority=8, justify="right"),
        Column("KV GiB", lambda r: g(r.plan.kv_cache_bytes), priority=9, justify="right"),
    ]


def _header(con, report) -> None:
    profile, opts = report.profile, report.options.search
    part = profile.partition(opts.partition)
    wl = opts.workload
    gpu = f"{part.gpus_per_node} x {part.gpu.name} ({g(part.gpu.memory_bytes)} GiB)" if part.gpu and part.gpus_per_node \
        else "no GPU"
    out = details.out
    out(con, ("Cluster ", "bold"), f"{profile.name}/{part.name}: {gpu}, {part.cpus_per_node} CPUs, "
             f"{g(part.mem_bytes)} GiB RAM per node", indent=0)
    for a in profile.assumed:
        out(con, ("assumed: ", "yellow"), a)
    out(con, ("Workload ", "bold"), f"context {wl.context_tokens:,} tokens (prompt {wl.prompt_tokens:,}), batch "
             f"{wl.batch}, {wl.attn_implementation} attention, transformers {opts.transformers}; memory in GiB (2^30 "
             "bytes)", indent=0)
    for n in details.common_notes(report.results):
        out(con, ("note: ", "dim"), n, indent=0)


def print_check(report, *, explain: bool = False, show_all: bool = False, replay: str = "",
                next_steps: bool = True) -> None:
    con = console()
    _header(con, report)
    con.print(fit(check_columns(report.results), report.results, con.width))
    common = set(details.common_notes(report.results))
    for r in report.results:
        details.print_model(con, r, explain=explain, show_all=show_all, skip_notes=common)
    display_vllm.print_jobs(con, report)
    if next_steps:
        details.print_next_steps(con, report, replay)


def print_matrix(spec, rows) -> None:
    con = console()
    cols = [Column("GPU", lambda r: r.gpu), Column("per node", lambda r: str(r.gpus_per_node), justify="right"),
            Column("status", lambda r: r.plan.status, style=lambda r: STATUS_STYLE[r.plan.status]),
            Column("GPUs x GiB", lambda r: gpu_cell(r.plan), justify="right"),
            Column("precision", lambda r: r.plan.precision),
            Column("tok/s", lambda r: speed_cell(r.plan), priority=1, justify="right"),
            Column("cpu/disk GiB", lambda r: offload_cell(r.plan), priority=2, justify="right")]
    con.print()
    con.print(fit(cols, rows, con.width, title=f"{spec.model_id} across the GPU catalog (best plan per node shape)"))


def print_gpus() -> None:
    con = console()
    cols = [Column("name", lambda x: x.name), Column("memory GiB", lambda x: f"{x.memory_bytes / GIB:.2f}", justify="right"),
            Column("HBM GB/s", lambda x: f"{x.hbm_bytes_per_s / 1e9:.0f}", justify="right"),
            Column("CC", lambda x: ".".join(map(str, x.compute_capability))),
            Column("bf16", lambda x: "yes" if x.bf16 else "no"), Column("fp8", lambda x: "yes" if x.fp8 else "no"),
            Column("bf16 TFLOP/s", lambda x: f"{x.bf16_tflops:.0f}", priority=1, justify="right"),
            Column("host GB/s", lambda x: f"{x.host_link_bytes_per_s / 1e9:.0f}", priority=2, justify="right"),
            Column("GPU-GPU GB/s", lambda x: f"{x.interconnect_bytes_per_s / 1e9:.0f}", priority=3, justify="right"),
            Column("aliases", lambda x: ", ".join(x.aliases), priority=4)]
    con.print(fit(cols, list(GPU_CATALOG.values()), con.width,
                  title="GPU catalog (memory: what torch can allocate, GiB; bandwidths in GB/s)"))
    con.print("memory sources: " + "; ".join(sorted({x.memory_source for x in GPU_CATALOG.values()})))


def print_models(rows: list[dict]) -> None:
    con = console()
    cols = [Column("model", lambda r: r["model_id"]), Column("architecture", lambda r: str(r.get("architecture"))),
            Column("checkpoint GiB", lambda r: g(r["checkpoint_bytes"]) if r.get("checkpoint_bytes") else "?",
                   justify="right"),
            Column("stored as", lambda r: str(r.get("checkpoint_dtype") or "?"), priority=1)]
    con.print(fit(cols, rows, con.width, title="vplan's offline catalog (planned without network access)"))
    con.print("Plan one with `vplan check MODEL` (the catalog is used when the Hub cannot be reached, or with --offline).")
