"""What this machine has installed that changes a plan (read from package metadata, nothing imported)."""
from __future__ import annotations

from importlib import metadata


def _version(dist: str) -> tuple[int, ...] | None:
    try:
        raw = metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
    out = []
    for part in raw.split("+")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (3 - len(out)))


def mxfp4_kernels_here(requirements: dict) -> bool:
    """`kernels` in transformers' supported range and triton new enough installed in this environment (``requirements``:
    the ``mxfp4_requirements`` behaviour of the planned transformers version): when the login node shares the compute
    nodes' environment, gpt-oss will stay MXFP4 there."""
    k, t = _version("kernels"), _version("triton")
    low, high = requirements["kernels"]
    return k is not None and t is not None and low <= k < high and t >= requirements["triton_min"]
