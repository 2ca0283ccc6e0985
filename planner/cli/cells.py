"""The cells of vplan's tables and detail lines: one function per figure, GiB (2^30 bytes) for memory."""
from __future__ import annotations

from vplan.planner.plan.contract import Plan, Rejection
from vplan.planner.units import GIB, fmt_count

STATUS_STYLE = {"fits": "bold green", "cpu-offload": "yellow", "disk-offload": "red", "does-not-fit": "bold red"}


def g(n: int) -> str:
    return f"{n / GIB:.1f}"


def runs_somehow(p: Plan) -> bool:
    """Runnable, or rejected only for its speed: its figures describe a real placement."""
    return p.fits or p.rejection == Rejection.TOO_SLOW


def gpu_cell(p: Plan) -> str:
    """GPUs used x the largest planned peak among them (the details list every GPU)."""
    if not p.gpu_devices:
        return "CPU" if runs_somehow(p) else "-"
    if not runs_somehow(p):
        return f"{p.gpus} x -"
    nodes = f"{p.nodes} nodes x " if p.nodes > 1 else ""
    return f"{nodes}{p.gpus} x {g(max(d.total_bytes for d in p.gpu_devices))}"


def offload_cell(p: Plan) -> str:
    if not runs_somehow(p) or not (p.cpu_bytes or p.offload_disk_bytes):
        return "-"
    return f"{g(p.cpu_bytes) if p.cpu_bytes else '-'}/{g(p.offload_disk_bytes) if p.offload_disk_bytes else '-'}"


def speed_cell(p: Plan) -> str:
    if not runs_somehow(p):
        return "-"
    t = p.speed.decode_tokens_per_s
    return f"{t:.1f}" if t >= 1 else f"{t:.3f}"


def load_cell(p: Plan) -> str:
    s = p.speed.load_seconds
    if not runs_somehow(p):
        return "-"
    return f"{s / 60:.0f} min" if s >= 60 else f"{s:.0f} s"


def params_text(spec, long: bool = False) -> str:
    if spec.params_active == spec.params_total:
        return fmt_count(spec.params_total)
    return f"{fmt_count(spec.params_total)} ({fmt_count(spec.params_active)}{' active' if long else ''})"


def short_names(ids) -> dict[str, str]:
    """The last part of each id (the folder name of a local model), unless two rows would then read the same."""
    last = {m: m.rstrip("/").rsplit("/", 1)[-1] or m for m in ids}
    clash = {v for v in last.values() if list(last.values()).count(v) > 1}
    return {m: (m if v in clash else v) for m, v in last.items()}
