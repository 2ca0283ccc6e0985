"""Probes of the node preflight compares with the plan: GPUs, the job's RAM ceiling, disk, installed packages.

Each probe is a small function whose inputs can be pointed elsewhere (``VPLAN_CGROUP_ROOT``, ``env=``) so tests
run them against fake nodes. torch is imported only by :func:`probe_gpus`, after the allocator is configured.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from vplan.planner.units import MIB
from vplan.runtime.alloc import ensure_expandable_segments

UNLIMITED_BYTES = 1 << 60  # cgroup v1 writes ~2^63 for "no limit"


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    capability: tuple[int, int] | None = None


def probe_gpus() -> list[GpuInfo]:
    """Visible CUDA devices via torch (the allocator is configured first, as loading will)."""
    ensure_expandable_segments()
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out.append(GpuInfo(i, props.name, int(total), int(free), (props.major, props.minor)))
    return out


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        v = int(text)
    except ValueError:
        return None
    return None if v >= UNLIMITED_BYTES else v


def cgroup_memory_limit(env: Mapping[str, str] | None = None) -> tuple[int | None, str]:
    """Smallest memory limit on this process's cgroup path (v2 memory.max, v1 memory.limit_in_bytes).

    ``VPLAN_CGROUP_ROOT`` (default /sys/fs/cgroup) and ``VPLAN_PROC_CGROUP`` (default /proc/self/cgroup) point
    the probe at a fake tree. Returns (bytes or None, file it came from).
    """
    env = os.environ if env is None else env
    root = Path(env.get("VPLAN_CGROUP_ROOT", "/sys/fs/cgroup"))
    rel_v2, rel_v1 = "", ""
    try:
        for line in Path(env.get("VPLAN_PROC_CGROUP", "/proc/self/cgroup")).read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
                rel_v2 = parts[2].lstrip("/")
            elif len(parts) == 3 and "memory" in parts[1].split(","):
                rel_v1 = parts[2].lstrip("/")
    except OSError:
        pass
    candidates: list[Path] = []
    for base, rel, fname in ((root, rel_v2, "memory.max"), (root / "memory", rel_v1, "memory.limit_in_bytes")):
        d = base / rel if rel else base
        while True:
            candidates.append(d / fname)
            if d == base or base not in d.parents:
                break
            d = d.parent
    best: tuple[int | None, str] = (None, "")
    for p in candidates:
        v = _read_int(p)
        if v is not None and (best[0] is None or v < best[0]):
            best = (v, str(p))
    return best


def slurm_memory_limit(env: Mapping[str, str] | None = None) -> tuple[int | None, str]:
    """SLURM_MEM_PER_NODE, or SLURM_MEM_PER_CPU x SLURM_CPUS_ON_NODE; SLURM's MB are MiB."""
    env = os.environ if env is None else env
    try:
        if env.get("SLURM_MEM_PER_NODE"):
            return int(env["SLURM_MEM_PER_NODE"]) * MIB, f"SLURM_MEM_PER_NODE={env['SLURM_MEM_PER_NODE']}"
        if env.get("SLURM_MEM_PER_CPU"):
            cpus = int(env.get("SLURM_CPUS_ON_NODE") or 1)
            return int(env["SLURM_MEM_PER_CPU"]) * MIB * cpus, (
                f"SLURM_MEM_PER_CPU={env['SLURM_MEM_PER_CPU']} x SLURM_CPUS_ON_NODE={cpus}")
    except ValueError:
        pass
    return None, ""


def physical_ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        import psutil

        return int(psutil.virtual_memory().total)


def host_ram_limit(env: Mapping[str, str] | None = None) -> tuple[int, str]:
    """The job's real RAM ceiling: the smallest of cgroup, SLURM allocation and physical RAM."""
    found = [cgroup_memory_limit(env), slurm_memory_limit(env), (physical_ram_bytes(), "physical RAM")]
    return min(((v, src) for v, src in found if v is not None), key=lambda x: x[0])


def free_disk(path: Path) -> tuple[int, Path]:
    p = path.expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free, p


def installed_version(dist: str) -> str | None:
    if importlib.util.find_spec(dist.replace("-", "_")) is None:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
