"""Byte sizes: parsing user input and labelled display. Bytes are the only internal unit."""
from __future__ import annotations

import re

from vplan.planner.errors import UsageError

KIB = 1024
MIB = 1024**2
GIB = 1024**3
GB = 1000**3
GB_S = GB  # bandwidths: bytes per second, written in GB/s for people

_SIZE_RE = re.compile(r"^\s*([0-9]{1,20}(?:\.[0-9]{1,20})?)\s*([KMGTP]?)(i?)(B?)\s*\Z", re.IGNORECASE)
MAX_SIZE_BYTES = 2**60  # 1 EiB: no node, GPU or scratch holds more
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}


def parse_size_bytes(text: str | int | float, *, what: str = "size") -> int:
    """Parse ``128GB`` (10^9), ``120GiB`` (2^30), ``64G`` (SLURM style: 2^30), ``4096`` (bytes).

    A bare SLURM suffix (``G``, ``M``) is binary, as in ``sbatch --mem=64G``; ``GB`` is decimal.
    """
    if isinstance(text, bool):
        raise UsageError(f"{what}: expected a size like 128GB or 120GiB, got {text!r}")
    if isinstance(text, (int, float)):
        if not 0 <= text <= MAX_SIZE_BYTES:  # also NaN
            raise UsageError(f"{what}: a size must be from 0 to {MAX_SIZE_BYTES} bytes (1 EiB), got {text!r}")
        return int(text)
    m = _SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"{what}: cannot read {text!r} as a size; write it like 128GB, 120GiB or 64G")
    number, prefix, binary, b = m.groups()
    power = _POWERS[prefix.upper()]
    decimal = bool(b) and not binary
    base = 1000 if decimal else 1024
    n = int(float(number) * base**power)
    if n > MAX_SIZE_BYTES:
        raise UsageError(f"{what}: {str(text).strip()!r} is more than 1 EiB; give the size of one node, GPU or disk")
    return n


def gib(n_bytes: int | float) -> str:
    return f"{n_bytes / GIB:.1f} GiB"


def fmt_count(n: int) -> str:
    """Parameter counts as people say them: 70.6B, 21.0B, 596M."""
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def parse_duration_s(text: str) -> int:
    """SLURM time formats: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS; also 'UNLIMITED'/'INFINITE'."""
    t = str(text).strip()
    if t.upper() in ("UNLIMITED", "INFINITE"):
        return 0
    days = 0
    if "-" in t:
        d, t = t.split("-", 1)
        if not d.isdigit():
            raise UsageError(f"time {text!r}: expected D-HH:MM:SS")
        days = int(d)
        parts = t.split(":")
        if not all(p.isdigit() for p in parts) or len(parts) > 3:
            raise UsageError(f"time {text!r}: expected D-HH:MM:SS")
        parts = [int(p) for p in parts] + [0] * (3 - len(parts))
        h, m, s = parts
    else:
        parts = t.split(":")
        if not all(p.isdigit() for p in parts) or not 1 <= len(parts) <= 3:
            raise UsageError(f"time {text!r}: expected MM, MM:SS or HH:MM:SS (SLURM formats)")
        nums = [int(p) for p in parts]
        if len(nums) == 1:
            h, m, s = 0, nums[0], 0
        elif len(nums) == 2:
            h, m, s = 0, nums[0], nums[1]
        else:
            h, m, s = nums
    return ((days * 24 + h) * 60 + m) * 60 + s


def format_duration_slurm(seconds: int) -> str:
    """Seconds to SLURM's D-HH:MM:SS (rounded up to whole minutes)."""
    minutes = -(-int(seconds) // 60)
    days, rem = divmod(minutes, 24 * 60)
    h, m = divmod(rem, 60)
    return f"{days}-{h:02d}:{m:02d}:00" if days else f"{h:02d}:{m:02d}:00"
