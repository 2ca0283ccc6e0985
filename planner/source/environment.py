"""What this machine has installed that changes a plan (read from package metadata, nothing imported)."""
from __future__ import annotations

from importlib import metadata

MXFP4_KERNELS_RANGE = ((0, 18, 2), (0, 19, 0))  # transformers 5.23/5.24 utils/import_utils.py KERNELS_MIN/MAX_VERSION
MXFP4_TRITON_MIN = (3, 4, 0)


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


def mxfp4_kernels_here() -> bool:
    """`kernels` in transformers' supported range and triton >= 3.4 installed in this environment: when the login
    node shares the compute nodes' environment, gpt-oss will stay MXFP4 there."""
    k, t = _version("kernels"), _version("triton")
    return k is not None and t is not None and MXFP4_KERNELS_RANGE[0] <= k < MXFP4_KERNELS_RANGE[1] and t >= MXFP4_TRITON_MIN
