"""Measured against planned: memory per device after load and at the peak, speeds; and how they are shown.

Measurements (all bytes):
- GPU: ``torch.cuda.memory_allocated`` after load (against the planned weights), ``max_memory_reserved`` at the
  peak (against the planned total), device-level use from ``torch.cuda.mem_get_info`` (includes the CUDA context).
- CPU: the process RSS growth while ``from_pretrained`` ran (against the planned CPU weights), peak RSS (against
  the plan's host RAM), and the bytes of the tensors the model holds on the CPU.
- disk: bytes of the tensors the device map leaves on disk (and files written to the offload folder).
Display: a rich table when stderr is a terminal, plain ``[*]`` lines otherwise (batch logs).
"""
from __future__ import annotations

import os
import resource
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable

from vplan.planner.units import GIB, MIB

Log = Callable[[str], None]


def stderr_log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fmt_bytes(n: int | float) -> str:
    """Labelled binary units; MiB below 1 GiB so tiny models read sensibly."""
    return f"{n / GIB:.2f} GiB" if abs(n) >= GIB else f"{n / MIB:.1f} MiB"


def diff_pct(measured: int, planned: int) -> float | None:
    return None if planned <= 0 else 100.0 * (measured - planned) / planned


@dataclass(frozen=True)
class DeviceMeasure:
    device: str  # "0", "1", ..., "cpu", "disk"
    planned_bytes: int  # the plan's figure this row is compared with
    measured_bytes: int
    what: str  # what was measured, e.g. "weights: torch.cuda.memory_allocated"
    tensor_bytes: int = 0  # bytes of the model's tensors placed on this device (from the model itself)
    extra: dict = field(default_factory=dict)  # device_used_bytes, reserved_peak_bytes, ...

    @property
    def diff_pct(self) -> float | None:
        return diff_pct(self.measured_bytes, self.planned_bytes)

    def to_dict(self) -> dict:
        return {**asdict(self), "diff_pct": self.diff_pct}


@dataclass(frozen=True)
class LoadReport:
    model_id: str
    source: str  # the Hub id or local folder loaded from
    load_seconds: float
    device_map_planned: dict
    device_map_used: dict | None  # model.hf_device_map (None when one device: no hooks)
    device_map_matches: bool
    measures: tuple[DeviceMeasure, ...]
    gpus: tuple[dict, ...] = ()  # {"index", "name", "total_bytes"}
    from_pretrained_kwargs: dict = field(default_factory=dict)  # as logged (repr of objects)
    weight_checks: tuple[dict, ...] = ()  # the loaded weights against the plan (runtime/transformers/verify.py)
    allocator: dict = field(default_factory=dict)  # the CUDA allocator setting in force (runtime/alloc.py)

    @property
    def weights_as_planned(self) -> bool:
        return all(c["ok"] for c in self.weight_checks)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["measures"] = [m.to_dict() for m in self.measures]
        return d


@dataclass(frozen=True)
class RunReport:
    records_total: int
    records_done: int  # generated in this run
    records_skipped: int  # already in the output file
    new_tokens: int
    seconds: float
    peak: tuple[DeviceMeasure, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s, "peak": [m.to_dict() for m in self.peak]}


# ----------------------------------------------------------------------------------------- measurement
def rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_rss_bytes() -> int:
    """ru_maxrss (KiB on Linux) of this process."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def gpu_snapshot() -> dict[int, dict]:
    """Per visible GPU: allocated, peak reserved, device-level used (includes other processes and the context)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    out = {}
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        out[i] = {"allocated_bytes": int(torch.cuda.memory_allocated(i)),
                  "max_allocated_bytes": int(torch.cuda.max_memory_allocated(i)),
                  "reserved_peak_bytes": int(torch.cuda.max_memory_reserved(i)),
                  "device_used_bytes": int(total - free), "total_bytes": int(total)}
    return out


def _quant_state_bytes(t) -> int:
    """bitsandbytes keeps scales beside the weight: int8 ``SCB`` (fp32 per row), 4-bit ``quant_state`` (absmax, ...)."""
    import torch

    extra = 0
    scb = getattr(t, "SCB", None)
    if isinstance(scb, torch.Tensor):
        extra += scb.numel() * scb.element_size()
    qs = getattr(t, "quant_state", None)
    for state in (qs, getattr(qs, "state2", None)):  # double quantization nests a second state
        for name in ("absmax", "code"):
            v = getattr(state, name, None)
            if isinstance(v, torch.Tensor):
                extra += v.numel() * v.element_size()
    return extra


def tensor_bytes_by_device(model, device_map: dict | None) -> dict[str, int]:
    """Bytes of parameters and buffers per planned device key; modules resolved by the longest device-map prefix.

    Offloaded modules hold meta tensors: their dtype and shape still give the bytes they stand for.
    """
    keys = sorted((device_map or {}).keys(), key=len, reverse=True)
    out: dict[str, int] = {}
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        dev = next((str(device_map[k]) for k in keys if k == "" or name == k or name.startswith(k + ".")), None)
        if dev is None:  # not in the map: where the tensor actually is
            dev = str(t.device.index) if t.device.type == "cuda" else "cpu"
        out[dev] = out.get(dev, 0) + t.numel() * t.element_size() + _quant_state_bytes(t)
    return out


def folder_bytes(path: str | None) -> int:
    if not path or not os.path.isdir(path):
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def load_measures(plan, *, tensors: dict[str, int], rss_delta: int, gpus: dict[int, dict],
                  offload_folder: str | None) -> tuple[DeviceMeasure, ...]:
    out = []
    for d in plan.devices:
        if d.device.isdigit():
            g = gpus.get(int(d.device))
            if g is None:
                continue
            out.append(DeviceMeasure(d.device, d.weights_bytes, g["allocated_bytes"], "weights: torch.cuda.memory_allocated",
                                     tensors.get(d.device, 0), {"device_used_bytes": g["device_used_bytes"]}))
        elif d.device == "cpu":
            out.append(DeviceMeasure("cpu", d.weights_bytes, rss_delta, "weights: process RSS growth during load",
                                     tensors.get("cpu", 0)))
        elif d.device == "disk":
            written = folder_bytes(offload_folder)
            out.append(DeviceMeasure("disk", d.weights_bytes, tensors.get("disk", 0), "weights: tensors left on disk",
                                     tensors.get("disk", 0), {"offload_folder_bytes": written}))
    return tuple(out)


def peak_measures(plan) -> tuple[DeviceMeasure, ...]:
    out = []
    gpus = gpu_snapshot() if plan.gpus else {}
    for d in plan.gpu_devices:
        g = gpus.get(int(d.device))
        if g:
            out.append(DeviceMeasure(d.device, d.total_bytes, g["reserved_peak_bytes"], "peak: torch.cuda.max_memory_reserved",
                                     extra={"device_used_bytes": g["device_used_bytes"], "max_allocated_bytes": g["max_allocated_bytes"]}))
    out.append(DeviceMeasure("cpu", plan.host_ram_bytes, peak_rss_bytes(), "peak: process max RSS vs plan host RAM"))
    return tuple(out)


# ------------------------------------------------------------------------------------------- rendering
def _pct(p: float | None) -> str:
    return "n/a" if p is None else f"{p:+.1f}%"


def measure_lines(measures, title: str) -> list[str]:
    lines = [f"[*] {title}:"]
    for m in measures:
        dev = f"GPU {m.device}" if m.device.isdigit() else m.device
        extra = "".join(f", {k.replace('_bytes', '')} {fmt_bytes(v)}" for k, v in m.extra.items() if k.endswith("_bytes"))
        tensors = f", tensors {fmt_bytes(m.tensor_bytes)}" if m.tensor_bytes else ""
        lines.append(f"[*]   {dev}: planned {fmt_bytes(m.planned_bytes)}, measured {fmt_bytes(m.measured_bytes)} "
                     f"({_pct(m.diff_pct)}) [{m.what}{tensors}{extra}]")
    return lines


def render_measures(measures, title: str, log: Log = stderr_log, *, tty: bool | None = None) -> None:
    tty = sys.stderr.isatty() if tty is None else tty
    if not tty:
        for line in measure_lines(measures, title):
            log(line)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("device", "planned", "measured", "diff", "measured how", "model tensors"):
        table.add_column(col, justify="left" if col in ("device", "measured how") else "right")
    for m in measures:
        table.add_row(f"GPU {m.device}" if m.device.isdigit() else m.device, fmt_bytes(m.planned_bytes),
                      fmt_bytes(m.measured_bytes), _pct(m.diff_pct), m.what, fmt_bytes(m.tensor_bytes) if m.tensor_bytes else "")
    Console(stderr=True).print(table)
