"""What hardware runs this model? The model across the built-in GPU catalog (1/2/4/8 GPUs a node), and the
cheapest setups that run it entirely on GPUs (the suggestions shown when nothing fits here)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from vplan.planner.hardware.cluster import profile_for_gpu
from vplan.planner.hardware.gpus import GPU_CATALOG
from vplan.planner.model import ModelSpec
from vplan.planner.plan.contract import Plan
from vplan.planner.search import precision as policy
from vplan.planner.memory import weights
from vplan.planner.search.core import SearchOptions, search
from vplan.planner.search.transformers import build_candidate

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
    """Setups from the catalog that run the model entirely on GPUs, cheapest first: for every GPU type and every
    precision the search may choose there, the fewest GPUs (up to 8 a node) that hold it; ranked by GPU memory bought
    (GPUs x capacity), then precision. GPU types with the same memory and answer share a line; a line adds the
    best precision of its GPU type when that needs more GPUs."""
    o = replace(opts, no_offload=True, partition=None, max_gpus=None, precision=None)
    found: list[tuple] = []  # (memory bought, quality, -speed, gpu, n, precision, speed)
    for name, gpu in GPU_CATALOG.items():
        profile = profile_for_gpu(name, max(GPU_COUNTS), nodes=1)
        part = profile.partition()
        for prec in policy.ladder(spec, gpu, forced=None, mxfp4_kernels=opts.mxfp4_kernels).tried:
            first = max(1, -(-weights.weight_bytes(spec, prec) // gpu.memory_bytes))  # fewer cannot hold the weights
            for n in range(first, max(GPU_COUNTS) + 1):
                c = build_candidate(spec, profile, part, prec, n, o, offload="none")
                if c.status == "fits":
                    s = c.speed.decode_tokens_per_s
                    found.append((n * gpu.memory_bytes, policy.QUALITY.get(prec, 9), -s, name, n, prec, s))
                    break
    found.sort()
    best_quality = {}
    for f in sorted(found, key=lambda f: (f[1], f[0])):
        best_quality.setdefault(f[3], f)
    lines: dict[tuple, list] = {}
    for cost, _, _, name, n, prec, speed in found:
        key = (n, prec, GPU_CATALOG[name].memory_bytes)
        if any(name in names for names, _ in lines.values()):
            continue
        if key in lines:
            lines[key][0].append(name)
            continue
        if len(lines) >= limit:
            continue
        bq = best_quality[name]
        better = f"; {bq[5]} on {bq[4]}" if bq[5] != prec else ""
        lines[key] = ([name], f"in {prec} (~{speed:.0f} tokens/s{better})")
    return tuple(f"{n} x {'/'.join(names)} {text}" for (n, _, _), (names, text) in lines.items())
