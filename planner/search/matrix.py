"""What hardware runs this model? The model across the built-in GPU catalog (1/2/4/8 GPUs a node), and the
cheapest setups that run it entirely on GPUs (the suggestions shown when nothing fits here)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from vplan.planner.hardware.cluster import profile_for_gpu
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.model import ModelSpec
from vplan.planner.plan.contract import Plan
from vplan.planner.search import precision as policy
from vplan.planner.search.core import SearchOptions, search

GPU_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class MatrixRow:
    gpu: str
    gpus_per_node: int
    plan: Plan


def hardware_matrix(spec: ModelSpec, opts: SearchOptions, gpu_names: tuple[str, ...] | None = None,
                    counts: tuple[int, ...] = GPU_COUNTS) -> list[MatrixRow]:
    """Best plan for each catalog GPU type x GPUs per node (node RAM and CPUs: the catalog assumptions)."""
    o = replace(opts, partition=None, max_gpus=None, precision=None)
    rows = []
    for name in gpu_names or tuple(GPU_CATALOG):
        for n in counts:
            rows.append(MatrixRow(name, n, search(spec, profile_for_gpu(name, n, nodes=1), o).plan))
    return rows


def suggest_hardware(spec: ModelSpec, opts: SearchOptions, limit: int = 4) -> tuple[str, ...]:
    """Setups from the catalog that run the model entirely on GPUs, cheapest first (the least GPU memory bought:
    GPUs x capacity), then the best precision; one line per GPU type."""
    o = replace(opts, no_offload=True)
    rows = [r for r in hardware_matrix(spec, o, counts=(8,)) if r.plan.status == "fits"]
    rows.sort(key=lambda r: (r.plan.gpus * GPU_CATALOG[r.gpu].memory_bytes, policy.QUALITY.get(r.plan.precision, 9),
                             -r.plan.speed.decode_tokens_per_s))
    out, seen = [], set()
    for r in rows:
        if r.gpu in seen:
            continue
        seen.add(r.gpu)
        out.append(f"{r.plan.gpus} x {r.gpu} in {r.plan.precision} (~{r.plan.speed.decode_tokens_per_s:.0f} tokens/s)")
        if len(out) >= limit:
            break
    return tuple(out)
