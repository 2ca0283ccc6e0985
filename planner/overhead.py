"""Per-GPU and per-process overheads: every constant in one place, with its source.

No GPU was lent to the session that set these (2026-11-23): they are public figures, marked
UNMEASURED, to be replaced by measurements from `benchmarks/gpu_runtime.py` on a real device.
"""
from __future__ import annotations

from .hardware import GpuSpec

MIB = 1024**2
GIB = 1024**3

# CUDA context + torch's kernels loaded on first use, outside torch's allocator statistics.
# UNMEASURED: commonly reported 300-600 MiB on A100/H100 with torch 2.x and CUDA 12 (lazy loading on).
CUDA_CONTEXT_BYTES = 512 * MIB
# cuBLAS/cuBLASLt workspaces (torch allocates them through the caching allocator; 32 MiB on Hopper,
# 4 MiB + 8 MiB per stream elsewhere) plus cuDNN/SDPA workspaces. UNMEASURED, from torch defaults.
LIBRARY_WORKSPACE_BYTES = 128 * MIB
# Caching-allocator slack: segments rounded to 2 MiB / 20 MiB and split rules leave reserved but
# unallocated memory; with expandable_segments it is small. UNMEASURED: 2 % of the device, at least 256 MiB.
ALLOCATOR_RESERVE_FRACTION = 0.02
ALLOCATOR_RESERVE_MIN_BYTES = 256 * MIB

# Host side. Measured here (2026-11-23, torch 2.13.0+cpu, transformers 5.23): `import torch, transformers`
# and building a tokenizer leaves ~0.9 GiB RSS; CUDA builds add the CUDA runtime and pinned staging.
HOST_PROCESS_BYTES = 3 * GIB
# While loading, transformers materialises one tensor at a time from the mmapped shards and converts it;
# a block's bytes twice (source + converted) bound the transient.
HOST_LOAD_PEAK_FACTOR = 2


def gpu_overhead_bytes(gpu: GpuSpec) -> int:
    reserve = max(ALLOCATOR_RESERVE_MIN_BYTES, int(gpu.memory_bytes * ALLOCATOR_RESERVE_FRACTION))
    return CUDA_CONTEXT_BYTES + LIBRARY_WORKSPACE_BYTES + reserve


def host_load_peak_bytes(largest_block_bytes: int) -> int:
    return HOST_LOAD_PEAK_FACTOR * largest_block_bytes
