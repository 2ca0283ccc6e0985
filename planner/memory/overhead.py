"""Per-GPU and per-process overheads: every constant in one place, with its source.

GPU side: public figures, marked UNMEASURED in the plans. The fit rule: a GPU's planned peak (weights + KV +
activations + these overheads) must stay within what torch can allocate on it (GpuSpec.memory_bytes); the allocator
reserve below is the explicit margin for fragmentation. Loading transient on GPU: transformers 5 materialises and
converts a few tensors at a time on the target device (core_model_loading.py, up to 4 in flight), inside that margin.

Measured once, on a lent H100 80GB (torch 2.11.0+cu130, driver 580; benchmarks/results/gpu_runtime.md) and not yet
applied (one device, one torch build): CUDA context 648,871,936 B (above the 512 MiB below); device use beyond the
tensors at the generate() peak 0.72-0.88 GiB for dense models in bf16/int8/nf4 (the 2.2 GiB planned on an H100 is
1.3-1.5 GiB too high there) but 2.65 GiB for a Qwen3-MoE (1.97 GiB reserved and unallocated after loading its
fused experts: 0.45 GiB above the plan). Replacing the constants needs the same run on the other GPU kinds.
"""
from __future__ import annotations

from vplan.planner.hardware.gpus import GpuSpec
from vplan.planner.units import GIB, MIB

# CUDA context + torch's kernels loaded on first use, outside torch's allocator statistics.
# UNMEASURED: commonly reported 300-600 MiB on A100/H100 with torch 2.x and CUDA 12 (lazy loading on).
CUDA_CONTEXT_BYTES = 512 * MIB
# cuBLAS/cuBLASLt workspaces (torch allocates them through the caching allocator; 32 MiB on Hopper,
# 4 MiB + 8 MiB per stream elsewhere) plus cuDNN/SDPA workspaces. UNMEASURED, from torch defaults.
LIBRARY_WORKSPACE_BYTES = 128 * MIB
# Fragmentation margin of the caching allocator: segments are rounded (2 MiB / 20 MiB) and split, leaving
# reserved-but-unallocated memory; with expandable_segments (which vplan sets) it stays small.
# UNMEASURED: 2 % of the device, at least 256 MiB.
ALLOCATOR_RESERVE_FRACTION = 0.02
ALLOCATOR_RESERVE_MIN_BYTES = 256 * MIB

# Host side. The runtime process (python + torch + transformers + accelerate imported, a model class loaded)
# measured 348,110,848 B max RSS with the CPU wheel of torch 2.13 (transformers 5.23); a CUDA build
# adds the CUDA runtime and cuBLAS host libraries and pinned staging buffers (UNMEASURED, commonly 1-2.5 GiB):
# 3 GiB is planned for the process.
HOST_PROCESS_BYTES = 3 * GIB
# While loading, transformers materialises a block's tensors from the mmapped shards and converts them;
# a block's bytes twice (source + converted) bound the transient.
HOST_LOAD_PEAK_FACTOR = 2


def allocator_reserve_bytes(gpu: GpuSpec) -> int:
    return max(ALLOCATOR_RESERVE_MIN_BYTES, int(gpu.memory_bytes * ALLOCATOR_RESERVE_FRACTION))


def gpu_overhead_bytes(gpu: GpuSpec) -> int:
    """CUDA context + library workspaces + the fragmentation margin."""
    return CUDA_CONTEXT_BYTES + LIBRARY_WORKSPACE_BYTES + allocator_reserve_bytes(gpu)


def host_load_peak_bytes(largest_block_bytes: int) -> int:
    return HOST_LOAD_PEAK_FACTOR * largest_block_bytes
