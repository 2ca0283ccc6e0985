"""What hardware runs this model? The model across the built-in GPU catalog (1/2/4/8 GPUs a node)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from vplan.planner.hardware.cluster import profile_for_gpu
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.model.spec import ModelSpec
from vplan.planner.plan.contract import Plan

GPU_COUNTS = (1, 2, 4, 8)


@dataclass(frozen=True)
class MatrixRow:
    gpu: str
    gpus_per_node: int
    plan: Plan


def hardware_matrix(spec: ModelSpec, opts, gpu_names: tuple[str, ...] | None = None,
                    counts: tuple[int, ...] = GPU_COUNTS) -> list[MatrixRow]:
    """Best plan for each catalog GPU type x GPUs per node (node RAM: the catalog default)."""
    from vplan.planner.search.core import search  # search imports this module for suggestions

    rows = []
    o = replace(opts, partition=None, max_gpus=None)
    for name in gpu_names or tuple(GPU_CATALOG):
        for n in counts:
            prof = profile_for_gpu(name, n)
            res = search(spec, prof, replace(o, precision=None), _suggest=False)
            rows.append(MatrixRow(name, n, res.plan))
    return rows


def suggest_hardware(spec: ModelSpec, opts, limit: int = 3) -> tuple[str, ...]:
    """Setups from the catalog that run the model entirely on GPUs, best precision and least memory first."""
    from vplan.planner.search.core import QUALITY

    # one search per GPU type on an 8-GPU node: the search itself finds the fewest GPUs that fit
    o = replace(opts, no_offload=True)
    rows = [r for r in hardware_matrix(spec, o, counts=(8,)) if r.plan.status == "fits"]
    rows.sort(key=lambda r: (QUALITY.get(r.plan.precision, 9), r.plan.gpus * GPU_CATALOG[r.gpu].memory_bytes,
                             -r.plan.speed.decode_tokens_per_s))
    out, seen = [], set()
    for r in rows:
        key = (r.gpu, r.plan.precision)
        if key in seen:
            continue
        seen.add(key)
        out.append(f"{r.plan.gpus} x {r.gpu} in {r.plan.precision} (~{r.plan.speed.decode_tokens_per_s:.0f} tokens/s)")
        if len(out) >= limit:
            break
    return tuple(out)
