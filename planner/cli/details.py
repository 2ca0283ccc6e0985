"""The details below the check table: per model its facts, the chosen plan's GPUs and host RAM, why, the
alternatives (a short list, or every one with ``--all``), what would run it; then the next commands to type."""
from __future__ import annotations

import re
import shlex

from vplan.planner.cli import display_vllm
from vplan.planner.cli.cells import g, offload_cell, params_text, runs_somehow, speed_cell
from vplan.planner.cli.layout import out
from vplan.planner.plan.contract import Plan, Rejection


_out = out


def common_notes(results) -> list[str]:
    """Source notes every model shares (e.g. why the Hub was not used): printed once above the table."""
    if len(results) < 2:
        return []
    first = list(results[0].spec.notes)
    return [n for n in first if all(n in r.spec.notes for r in results[1:])]


def _where(p: Plan) -> str:
    return display_vllm.shape_label(p)


def print_model(con, r, *, explain: bool, show_all: bool, skip_notes=frozenset()) -> None:
    p, s = r.plan, r.spec
    con.print()
    rev = f"revision {s.revision[:12]}" if s.revision else "revision not pinned"
    engine = f" with {p.engine}" if p.engine != "transformers" else ""
    _out(con, (s.model_id, "bold"), engine, (f" ({s.architecture}, from {s.source}, {rev})", "dim"), indent=0)
    kv = (f"; KV cache {p.kv_bytes_per_token / 1024:.0f} KiB/token = {g(p.kv_cache_bytes)} GiB for {p.workload.batch} "
          f"x {p.workload.context_tokens:,} tokens") if p.kv_bytes_per_token else ""  # none: the engine refused the model
    _out(con, f"{params_text(s, long=True)} parameters; checkpoint {g(s.checkpoint_bytes)} GiB {s.checkpoint_dtype_label}{kv}")
    for n in s.notes:
        if n not in skip_notes:
            _out(con, ("source: ", "dim"), (n, "dim"))
    if runs_somehow(p) and p.vllm is not None and p.gpu_devices:
        display_vllm.print_ranks(con, p, memory_bar if explain else None)
        _out(con, f"host RAM: {g(p.host_ram_bytes)} GiB per node")
        if p.fits:
            _out(con, display_vllm.speed_line(p).strip())
    elif runs_somehow(p):
        for names, d in gpu_groups(p):
            _out(con, f"{names}: {g(d.total_bytes)} of {g(d.capacity_bytes)} GiB{' each' if ',' in names or '-' in names else ''}"
                      f" = weights {g(d.weights_bytes)} + KV {g(d.kv_cache_bytes)} + activations "
                      f"{g(d.activation_bytes)} + overhead {g(d.overhead_bytes)}")
            if explain:
                con.print("    " + memory_bar(d))
        folder = f"; offload folder {g(p.disk_bytes)} GiB" if p.disk_bytes else ""
        _out(con, f"host RAM: {g(p.host_ram_bytes)} GiB (CPU weights {g(p.cpu_bytes)}){folder}; load "
                  f"~{p.speed.load_seconds:.0f} s; ~{speed_cell(p)} tokens/s decode, ~{p.speed.prefill_tokens_per_s:,.0f} "
                  "tokens/s prefill")
    if p.reason:
        _out(con, ("why: ", "dim") if p.fits else ("why not: ", "red"), p.reason)
    for c in p.conditions:
        _out(con, ("condition: ", "yellow"), c)
    for w in p.warnings:
        _out(con, ("warning: ", "yellow"), w)
    if r.suggestions:
        _out(con, ("would run on: ", "green"), "; ".join(r.suggestions))
    every = list(r.alternatives)
    shown = every if show_all else short_alternatives(r)
    if shown:
        more = f" ({len(shown)} of {len(every)}; --all lists every one)" if len(shown) < len(every) else ""
        _out(con, f"alternatives{more}:")
        for a in shown:
            _out(con, ("- ", "dim"), *_alternative(a), indent=4)


def gpu_groups(p: Plan) -> list[tuple[str, object]]:
    """Consecutive GPUs with the same budget share one line: ("GPU 0-1", budget)."""
    out: list[list] = []
    for d in p.gpu_devices:
        same = out and out[-1][1].node == d.node and _budget(out[-1][1]) == _budget(d)
        if same:
            out[-1][2] = d.device
        else:
            out.append([d.device, d, d.device])
    node = (lambda d: f"node {d.node} ") if p.nodes > 1 else (lambda d: "")
    return [(f"{node(d)}GPU {a}" if a == b else f"{node(d)}GPU {a}-{b}", d) for a, d, b in out]


def _budget(d) -> tuple:
    return (g(d.total_bytes), g(d.weights_bytes), g(d.kv_cache_bytes), g(d.activation_bytes), g(d.overhead_bytes))


def _alternative(a: Plan) -> list:
    head = f"{a.precision} on {_where(a)}: "
    if a.status == "does-not-fit":
        return [head, ("no", "red"), f" - {a.reason}"]
    gpus = " / ".join(g(d.total_bytes) for d in a.gpu_devices) or "-"
    cond = f" ({a.conditions[0].split(';')[0]})" if a.conditions else ""
    return [head, f"{a.status}, GPU {gpus} GiB, cpu/disk {offload_cell(a)} GiB, ~{speed_cell(a)} tokens/s{cond}"]


def short_alternatives(r) -> list[Plan]:
    """One per precision: the best runnable alternative, else the rejection that says most."""
    def score(a: Plan):
        ok = a.status != "does-not-fit"
        slow = a.rejection == Rejection.TOO_SLOW  # runs, only too slowly
        return (ok, a.status == "fits", slow, -a.gpus if ok else a.gpus, a.speed.decode_tokens_per_s)

    best: dict[str, Plan] = {}
    for a in r.alternatives:
        if a.precision not in best or score(a) > score(best[a.precision]):
            best[a.precision] = a
    return list(best.values())


def memory_bar(d, width: int = 50) -> str:
    cap = max(d.capacity_bytes, d.total_bytes, 1)
    parts = [(d.weights_bytes, "blue", "W"), (d.kv_cache_bytes, "magenta", "K"), (d.activation_bytes, "yellow", "A"),
             (d.overhead_bytes, "red", "O")]
    out, used = "", 0
    for b, color, ch in parts:
        n = round(width * b / cap)
        out += f"[{color}]{ch * n}[/]"
        used += n
    out += f"[green]{'.' * max(0, width - used)}[/]"
    return f"|{out}| W weights  K KV cache  A activations  O overhead  . free"


def plan_file_name(model_id: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id.rstrip("/").rsplit("/", 1)[-1]).strip("-.") or "model"
    return f"{base.lower()}.json"


def print_next_steps(con, report, replay: str = "") -> None:
    """What to type next: the plan file, the job script, the submission; or where to look when nothing runs."""
    runnable = [r for r in report.results if r.plan.fits]
    con.print()
    if not runnable:
        _out(con, ("next: ", "bold"), "nothing runs on these nodes. See 'would run on' above, `vplan check MODEL "
                  "--hardware` for the GPU catalog, or describe your own nodes with --cluster FILE (`vplan cluster "
                  "detect`).", indent=0)
        return
    r = runnable[0]
    same = [x for x in runnable if x.spec.model_id == r.spec.model_id]  # --engine all: one result per engine
    r = min(same, key=lambda x: x.plan.speed.job_seconds(x.plan.workload.requests))
    name = plan_file_name(r.spec.model_id)
    # a plan file is for one engine: with --engine all, the command names the engine whose job is faster
    flags = re.sub(r"--engine[ =]all\b", f"--engine {r.plan.engine}", f" {replay}" if replay else "")
    which = " (likewise for the other models)" if len(report.results) > 1 else ""
    _out(con, ("next steps", "bold"), f"{which}: the plan file, a job script that runs it (--input/--output, "
              "--prompt TEXT or -- CMD), the submission:", indent=0)
    for cmd in (f"vplan plan {shlex.quote(r.spec.model_id)}{flags} -o {name}",
                f"vplan render-sbatch {name} -o job.sh --input in.jsonl --output out.jsonl", "sbatch job.sh"):
        for line in shell_lines(cmd, con.width - 2):
            con.print("  " + line, highlight=False, markup=False, soft_wrap=True)


def shell_lines(cmd: str, width: int) -> list[str]:
    """A command as lines of at most ``width`` that a shell reads back as one (backslash continuations)."""
    lines, cur = [], ""
    for word in cmd.split(" "):
        if cur and len(cur) + 1 + len(word) + 2 > width:
            lines.append(cur + " \\")
            cur = "    " + word
        else:
            cur = f"{cur} {word}" if cur else word
    return lines + [cur]
