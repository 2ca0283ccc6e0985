"""Host RAM and offload-folder needs of a plan (the CPU side of the memory model)."""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.memory import overhead
from vplan.planner.model.spec import ModelSpec

# Of a node's RAM, this fraction is planned for the job: the rest is the OS, slurmd, page cache and
# the margin render-sbatch adds on top of the plan (a 120 GB offload budget cannot live in 128 GB).
HOST_USABLE_FRACTION = 0.80


@dataclass(frozen=True)
class HostBudget:
    process_bytes: int  # python + torch + transformers resident set, CUDA host allocations
    load_peak_bytes: int  # transient while loading (one block materialised / converted)
    weights_budget_bytes: int  # what is left for CPU-offloaded weights


def host_budget(mem_bytes: int, largest_block_bytes: int) -> HostBudget:
    process = overhead.HOST_PROCESS_BYTES
    load_peak = overhead.host_load_peak_bytes(largest_block_bytes)
    budget = int(mem_bytes * HOST_USABLE_FRACTION) - process - load_peak
    return HostBudget(process, load_peak, max(0, budget))


def needs_offload_folder(spec: ModelSpec, precision: str) -> bool:
    """Disk-offloaded weights are read from the original safetensors shards when they are stored as
    loaded; MoE models (experts fused at load), quantized loads and non-safetensors checkpoints write
    the offloaded weights to an offload folder instead (FACTS.md)."""
    fmt = spec.checkpoint.format if spec.checkpoint else "none"
    if fmt != "safetensors":
        return True
    if spec.moe is not None:
        return True
    return precision not in ("bf16", "fp16", "fp32") or bool(spec.checkpoint_quant)
