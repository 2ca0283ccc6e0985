"""Human and machine renderings of check results: rich tables, memory bars, the --json contract."""
from __future__ import annotations

from vplan.planner.cli import display_vllm
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.plan.contract import Plan, Rejection
from vplan.planner.units import GIB, fmt_count

STATUS_STYLE = {"fits": "bold green", "cpu-offload": "yellow", "disk-offload": "red", "does-not-fit": "bold red"}


def _g(n: int) -> str:
    return f"{n / GIB:.1f}"


def _console():
    import os
    import shutil

    from rich.console import Console

    cols = int(os.environ.get("COLUMNS", "0") or 0) or shutil.get_terminal_size((160, 40)).columns
    return Console(highlight=False, width=max(cols, 170))


def _gpu_cell(p: Plan) -> str:
    if not p.gpu_devices:
        return "-"
    return display_vllm.gpu_cell(p)


def _offload_cell(p: Plan) -> str:
    parts = []
    if p.cpu_bytes:
        parts.append(f"cpu {_g(p.cpu_bytes)}")
    d = p.device("disk")
    if d:
        parts.append(f"disk {_g(d.weights_bytes)}")
    return ", ".join(parts) or "-"


def _speed_cell(p: Plan) -> str:
    t = p.speed.decode_tokens_per_s
    return f"{t:.1f}" if t >= 1 else f"{t:.3f}"


def print_check(report, explain: bool = False) -> None:
    from rich.table import Table

    con = _console()
    profile, results = report.profile, report.results
    opts = report.options.search
    part = profile.partition(opts.partition)
    wl = opts.workload
    gpu = f"{part.gpus_per_node} x {part.gpu.name}" if part.gpu and part.gpus_per_node else "no GPU"
    con.print(f"[bold]Cluster[/]: {profile.name}/{part.name}: {gpu}, {part.cpus_per_node} CPUs, "
              f"{part.mem_bytes / 1e9:.0f} GB RAM per node.  [bold]Workload[/]: context {wl.context_tokens} tokens, "
              f"prompt {wl.prompt_tokens}, batch {wl.batch}, {wl.attn_implementation} attention.  Memory in GiB.")
    t = Table(show_lines=False, header_style="bold")
    for col in ("model", "params (active)", "checkpoint", "KV/token", "KV@ctx", "status", "GPUs", "precision",
                "per-GPU GiB", "offload GiB", "tok/s", "load"):
        t.add_column(col, no_wrap=col in ("model", "status", "precision", "checkpoint", "KV/token"), overflow="fold")
    for r in results:
        p, s = r.plan, r.spec
        params = fmt_count(s.params_total) + (f" ({fmt_count(s.params_active)})" if s.params_active != s.params_total else "")
        ckpt = f"{s.checkpoint_bytes / 1e9:.1f} GB {s.checkpoint_dtype_label}"
        kvt = f"{p.kv_bytes_per_token / 1024:.0f} KiB"
        t.add_row(display_vllm.model_cell(p), params, ckpt, kvt, _g(p.kv_cache_bytes), f"[{STATUS_STYLE[p.status]}]{p.status}[/]",
                  display_vllm.gpus_cell(p), p.precision, _gpu_cell(p), _offload_cell(p), _speed_cell(p),
                  f"{p.speed.load_seconds / 60:.0f} min" if p.speed.load_seconds >= 60 else f"{p.speed.load_seconds:.0f} s")
    con.print(t)
    for r in results:
        _print_details(con, r, explain)
    display_vllm.print_jobs(con, report)


def _print_details(con, r, explain: bool) -> None:
    p, s = r.plan, r.spec
    con.print(f"\n[bold]{s.model_id}[/] [dim]({s.architecture}, {s.source}"
              f"{', revision ' + s.revision[:12] if s.revision else ', revision not pinned'})[/]")
    for n in getattr(s, "notes", ()) or ():
        con.print(f"  [dim]source: {n}[/]")
    if p.vllm is not None and p.gpu_devices:
        display_vllm.print_ranks(con, p, memory_bar if explain else None)
    elif p.gpu_devices:
        for d in p.gpu_devices:
            con.print(f"  GPU {d.device}: {_g(d.total_bytes)} of {_g(d.capacity_bytes)} GiB = weights {_g(d.weights_bytes)} + KV "
                      f"{_g(d.kv_cache_bytes)} + activations {_g(d.activation_bytes)} + overhead {_g(d.overhead_bytes)}")
            if explain:
                con.print("         " + memory_bar(d))
    if p.host_ram_bytes:
        con.print(f"  host RAM: {_g(p.host_ram_bytes)} GiB needed (CPU weights {_g(p.cpu_bytes)})"
                  + (f"; disk offload {_g(p.disk_bytes)} GiB in the offload folder" if p.disk_bytes else ""))
    if p.status != "does-not-fit" and p.vllm is not None:
        con.print(display_vllm.speed_line(p))
    elif p.status != "does-not-fit":
        con.print(f"  expect ~{_speed_cell(p)} tokens/s decode, ~{p.speed.prefill_tokens_per_s:.0f} tokens/s prefill, "
                  f"load ~{p.speed.load_seconds:.0f} s")
    if p.reason:
        con.print(f"  [red]why not:[/] {p.reason}" if not p.fits else f"  [dim]why:[/] {p.reason}")
    for c in p.conditions:
        con.print(f"  [yellow]condition:[/] {c}")
    for w in p.warnings:
        con.print(f"  [yellow]warning:[/] {w}")
    if r.suggestions:
        con.print("  [green]would run on:[/] " + "; ".join(r.suggestions))
    shown = _interesting_alternatives(r)
    if shown:
        con.print("  alternatives:")
        for a in shown:
            where = display_vllm.shape_label(a)
            if a.status == "does-not-fit":
                con.print(f"    [dim]-[/] {a.precision} on {where}: [red]no[/] - {a.reason}")
            else:
                con.print(f"    [dim]-[/] {a.precision} on {where}: {a.status}, GPU {_gpu_cell(a)} GiB, "
                          f"offload {_offload_cell(a)}, ~{_speed_cell(a)} tokens/s"
                          + (f" ({a.conditions[0].split(';')[0]})" if a.conditions else ""))


def _interesting_alternatives(r) -> list[Plan]:
    """One line per precision: the best runnable alternative, else the closest rejection."""
    def score(a: Plan):
        ok = a.status != "does-not-fit"
        # runnable: fewest GPUs then fastest; rejected: the attempt with the most GPUs says most
        slow = a.rejection == Rejection.TOO_SLOW
        return (ok, a.status == "fits", slow, -a.gpus if ok else a.gpus, a.speed.decode_tokens_per_s)

    by_prec: dict[str, Plan] = {}
    for a in r.alternatives:
        if a.precision == r.plan.precision and a.status == r.plan.status:
            continue
        cur = by_prec.get(a.precision)
        if cur is None or score(a) > score(cur):
            by_prec[a.precision] = a
    return list(by_prec.values())


def memory_bar(d, width: int = 50) -> str:
    cap = max(d.capacity_bytes, d.total_bytes, 1)
    parts = [("weights", d.weights_bytes, "blue", "W"), ("KV", d.kv_cache_bytes, "magenta", "K"),
             ("activations", d.activation_bytes, "yellow", "A"), ("overhead", d.overhead_bytes, "red", "O")]
    out, used = "", 0
    for _, b, color, ch in parts:
        n = round(width * b / cap)
        out += f"[{color}]{ch * n}[/]"
        used += n
    free = max(0, width - used)
    out += f"[green]{'.' * free}[/]"
    legend = "W weights  K KV cache  A activations  O overhead  . free"
    return f"|{out}| {legend}"


def print_matrix(spec, rows) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title=f"{spec.model_id} across the GPU catalog (best plan per node shape)", header_style="bold")
    for col in ("GPU", "per node", "status", "uses", "precision", "per-GPU GiB", "offload GiB", "tok/s"):
        t.add_column(col)
    for row in rows:
        p = row.plan
        t.add_row(row.gpu, str(row.gpus_per_node), f"[{STATUS_STYLE[p.status]}]{p.status}[/]", str(p.gpus), p.precision,
                  _gpu_cell(p), _offload_cell(p), _speed_cell(p))
    con.print(t)


def print_gpus() -> None:
    from rich.table import Table

    con = _console()
    t = Table(title="GPU catalog (memory: what torch can allocate, in GiB)", header_style="bold")
    for col in ("name", "memory GiB", "HBM GB/s", "CC", "bf16", "fp8", "bf16 TFLOP/s", "host link GB/s",
                "GPU-GPU GB/s", "aliases"):
        t.add_column(col)
    for g in GPU_CATALOG.values():
        t.add_row(g.name, f"{g.memory_bytes / GIB:.2f}", f"{g.hbm_bytes_per_s / 1e9:.0f}", ".".join(map(str, g.compute_capability)),
                  "yes" if g.bf16 else "no", "yes" if g.fp8 else "no", f"{g.bf16_tflops:.0f}",
                  f"{g.host_link_bytes_per_s / 1e9:.0f}", f"{g.interconnect_bytes_per_s / 1e9:.0f}", ", ".join(g.aliases))
    con.print(t)
    con.print("memory sources: " + "; ".join(sorted({g.memory_source for g in GPU_CATALOG.values()})))


def print_models(rows: list[dict]) -> None:
    from rich.table import Table

    con = _console()
    t = Table(title="vplan's offline catalog (plans without network access)", header_style="bold")
    for col in ("model", "architecture", "checkpoint GB", "stored as"):
        t.add_column(col)
    for r in rows:
        size = f"{r['checkpoint_bytes'] / 1e9:.1f}" if r.get("checkpoint_bytes") else "?"
        t.add_row(r["model_id"], str(r.get("architecture")), size, str(r.get("checkpoint_dtype") or "?"))
    con.print(t)
