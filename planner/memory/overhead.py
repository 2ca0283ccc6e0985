"""Per-GPU and per-process overheads: every constant in one place, with its source.

No GPU was lent to the session that set these (2026-11-23): the GPU figures are public figures /
literature, marked UNMEASURED (2026-11-23), to be replaced by measurements on a real device. Loading
transient on GPU: transformers 5 materialises and converts one tensor at a time on the target device
(core_model_loading.py), so the transient is one tensor (bnb: the bf16 source of one Linear before
quantization), inside the allocator reserve below; not modelled separately.
"""
from __future__ import annotations

from vplan.planner.hardware.gpus import GpuSpec

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

# Host side. MEASURED 2026-11-23 in /tmp/venv (torch 2.13.0+cpu, transformers 5.23, accelerate 1.15, python 3.11):
# `import torch, transformers, accelerate` + AutoModelForCausalLM/AutoTokenizer + llama modeling: VmRSS
# 340,100 kB, ru_maxrss 348,110,848 B (two runs, same to 0.1 %). CPU wheel: a CUDA build adds the CUDA
# runtime/cuBLAS host libraries and pinned staging (UNMEASURED, commonly 1-2.5 GiB): the budget below keeps
# 3 GiB for the process until a GPU node measures it.
HOST_IMPORT_RSS_BYTES_MEASURED_CPU = 348_110_848
HOST_PROCESS_BYTES = 3 * GIB
# While loading, transformers materialises one tensor at a time from the mmapped shards and converts it;
# a block's bytes twice (source + converted) bound the transient.
HOST_LOAD_PEAK_FACTOR = 2


def gpu_overhead_bytes(gpu: GpuSpec) -> int:
    reserve = max(ALLOCATOR_RESERVE_MIN_BYTES, int(gpu.memory_bytes * ALLOCATOR_RESERVE_FRACTION))
    return CUDA_CONTEXT_BYTES + LIBRARY_WORKSPACE_BYTES + reserve


def host_load_peak_bytes(largest_block_bytes: int) -> int:
    return HOST_LOAD_PEAK_FACTOR * largest_block_bytes
