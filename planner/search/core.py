"""Plan search: GPU count x precision x placement, each scored, the best chosen, the rest explained.

Default choice (DESIGN.md): the highest precision that fits entirely on GPUs, with the fewest GPUs;
otherwise the fastest offload plan at or above the speed floor; otherwise ``does-not-fit`` with the
reasons and the catalog setups that would run the model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from vplan.planner.search import candidate as budget
from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.errors import UsageError
from vplan.planner.model.spec import ModelSpec
from vplan.planner.plan.contract import Plan, Workload
from vplan.planner.units import GIB

# Quality order: a higher precision is preferred whenever it fits.
QUALITY = {"fp32": 0, "bf16": 1, "fp16": 1, "mxfp4": 1, "fp8": 2, "int8": 3, "bnb-int8": 3,
           "gptq-int4": 4, "awq-int4": 4, "nf4": 5, "bnb-nf4": 5}
DEFAULT_MIN_TOKENS_PER_S = 1.0


@dataclass(frozen=True)
class SearchOptions:
    workload: Workload = Workload()
    precision: str | None = None  # force one precision
    max_gpus: int | None = None
    no_offload: bool = False
    allow_disk: bool = True
    min_tokens_per_s: float = DEFAULT_MIN_TOKENS_PER_S
    partition: str | None = None
    mxfp4_kernels: bool = True  # assume `kernels` + triton >= 3.4 on the node (stated as a condition)


@dataclass(frozen=True)
class CheckResult:
    spec: ModelSpec
    plan: Plan
    alternatives: tuple[Plan, ...]
    suggestions: tuple[str, ...] = ()
    partition: Partition | None = None

    @property
    def kv_bytes_per_token(self) -> int:
        return self.plan.kv_bytes_per_token


def precisions_for(spec: ModelSpec, part: Partition, opts: SearchOptions) -> list[str]:
    """Precisions worth trying on this partition, best first."""
    gpu = part.gpu if part.gpus_per_node > 0 else None
    base = budget.compute_precision(gpu)
    native = budget.native_precision(spec, gpu)
    out: list[str] = []
    if native:
        out.append(native)
    if not budget.is_prequantized(spec) or budget.can_dequantize(spec):
        out.append(base)  # plain checkpoints, or MXFP4/FP8 ones transformers dequantizes while loading
    if not budget.is_prequantized(spec):
        if gpu is not None and gpu.fp8:
            out.append("fp8")
        out += ["int8", "nf4"]
    elif native is None and not budget.can_dequantize(spec):
        out.append(base)
    seen: list[str] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    if opts.precision:
        want = opts.precision.lower()
        if want not in seen:
            allowed = ", ".join(seen)
            raise UsageError(f"--precision {opts.precision}: not possible for {spec.model_id} on this partition; possible: {allowed}")
        return [want]
    return seen


def search(spec: ModelSpec, profile: ClusterProfile, opts: SearchOptions, *, _suggest: bool = True) -> CheckResult:
    part = profile.partition(opts.partition)
    max_gpus = part.gpus_per_node if opts.max_gpus is None else min(opts.max_gpus, part.gpus_per_node)
    gpu_counts = list(range(1, max_gpus + 1)) if part.gpu is not None and max_gpus > 0 else [0]
    precs = precisions_for(spec, part, opts)
    cands: list[Plan] = []
    # 1. all on GPU: highest precision first, then fewest GPUs
    chosen: Plan | None = None
    gpu_only: list[Plan] = []
    for prec in precs:
        for n in gpu_counts:
            if n == 0:
                break
            c = budget.build_candidate(spec, profile, part, prec, n, opts, offload="none")
            cands.append(c)
            gpu_only.append(c)
            if c.status == "fits":
                chosen = chosen or c
                break
    # 2. offload plans (on the most GPUs; CPU-only when the partition has none), evaluated always so the
    #    table can say what offloading would cost; chosen only when nothing fits on GPUs
    if not opts.no_offload:
        n = gpu_counts[-1]
        offl = []
        for prec in precs:
            for mode in ("cpu", "disk") if opts.allow_disk else ("cpu",):
                c = budget.build_candidate(spec, profile, part, prec, n, opts, offload=mode)
                cands.append(c)
                offl.append(c)
        runnable = [c for c in offl if c.status != "does-not-fit"]
        if runnable and chosen is None:
            chosen = max(runnable, key=lambda c: (c.speed.decode_tokens_per_s, -QUALITY.get(c.precision, 9)))
    suggestions: tuple[str, ...] = ()
    if chosen is None:
        # nothing runnable: report the most useful near miss and what hardware would run it
        # the closest miss: an offload plan that only failed the speed floor (fastest first), else the
        # all-GPU attempt on the most GPUs at the best precision
        slow = [c for c in cands if c.reason and "slower than the floor" in c.reason]
        if slow:
            near = max(slow, key=lambda c: c.speed.decode_tokens_per_s)
        else:
            widest = [c for c in gpu_only if c.gpus == gpu_counts[-1]]
            near = (widest or cands or [budget.build_candidate(spec, profile, part, precs[0], gpu_counts[-1], opts, offload="none")])[0]
        chosen = replace(near, status="does-not-fit")
        if _suggest:
            from vplan.planner.search.matrix import suggest_hardware

            suggestions = suggest_hardware(spec, opts)
    alts = tuple(c for c in _dedupe(cands) if c is not chosen and not _same(c, chosen))
    return CheckResult(spec=spec, plan=chosen, alternatives=alts, suggestions=suggestions, partition=part)


def _same(a: Plan, b: Plan) -> bool:
    return (a.precision, a.gpus, a.status, tuple(sorted(set(a.device_map.values())))) == (
        b.precision, b.gpus, b.status, tuple(sorted(set(b.device_map.values()))))


def _dedupe(cands: list[Plan]) -> list[Plan]:
    out: list[Plan] = []
    for c in cands:
        if not any(_same(c, o) and c.reason == o.reason for o in out):
            out.append(c)
    return out
