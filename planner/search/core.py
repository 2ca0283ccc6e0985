"""Plan search for the transformers engine: GPU count x precision x placement, each scored, the best chosen,
the rest kept as alternatives with their reasons.

Default choice (DESIGN.md): the highest precision that fits entirely on GPUs, with the fewest GPUs; otherwise
the fastest offload plan at or above the speed floor; otherwise ``does-not-fit`` with the closest miss.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.model import ModelSpec
from vplan.planner.model.behaviours import DEFAULT_TRANSFORMERS, requirement_spec
from vplan.planner.plan.contract import Plan, Rejection, Workload
from vplan.planner.search import precision as policy
from vplan.planner.search.transformers import build_candidate

DEFAULT_MIN_TOKENS_PER_S = 1.0


@dataclass(frozen=True)
class SearchOptions:
    workload: Workload = field(default_factory=Workload)
    precision: str | None = None  # force one precision
    max_gpus: int | None = None
    no_offload: bool = False
    allow_disk: bool = True
    min_tokens_per_s: float = DEFAULT_MIN_TOKENS_PER_S
    partition: str | None = None
    mxfp4_kernels: bool = False  # the nodes are known to have `kernels` + triton for MXFP4 (flag, profile, detected)
    transformers: str = DEFAULT_TRANSFORMERS  # the transformers version on the nodes the plan is for
    engine: str = "transformers"  # transformers | vllm | all (both, side by side)

    @property
    def transformers_spec(self) -> str:
        return requirement_spec(self.transformers)


@dataclass(frozen=True)
class CheckResult:
    spec: ModelSpec
    plan: Plan
    alternatives: tuple[Plan, ...]
    refused: tuple[policy.PrecisionChoice, ...] = ()  # precisions this device cannot take, with why
    suggestions: tuple[str, ...] = ()
    partition: Partition | None = None


def search(spec: ModelSpec, profile: ClusterProfile, opts: SearchOptions) -> CheckResult:
    part = profile.partition(opts.partition)
    max_gpus = part.gpus_per_node if opts.max_gpus is None else min(opts.max_gpus, part.gpus_per_node)
    gpu_counts = list(range(1, max_gpus + 1)) if part.gpu is not None and max_gpus > 0 else [0]
    gpu = part.gpu if gpu_counts[-1] > 0 else None
    lad = policy.ladder(spec, gpu, forced=opts.precision, mxfp4_kernels=opts.mxfp4_kernels)

    def build(prec, n, mode):
        return build_candidate(spec, profile, part, prec, n, opts, offload=mode)

    if not lad.tried:  # e.g. a GPTQ checkpoint on a CPU-only partition: no precision can run here
        return _no_precision(spec, gpu, lad, build(_any_precision(spec, gpu, lad), gpu_counts[-1], "none"), part)

    cands: list[Plan] = []
    chosen: Plan | None = None
    # 1. all on GPUs: highest precision first, then the fewest GPUs
    for prec in lad.tried:
        for n in gpu_counts:
            if n == 0:
                break
            c = build(prec, n, "none")
            cands.append(c)
            if c.status == "fits":
                if chosen is None:
                    chosen = _chosen(c, lad.tried, gpu_counts, "fits")
                break
    # 2. offload plans on the most GPUs (CPU-only when the partition has none): always evaluated so the table
    #    can say what offloading costs; chosen only when nothing fits on the GPUs
    if not opts.no_offload:
        n = gpu_counts[-1]
        offl = [build(prec, n, mode) for prec in lad.tried for mode in (("cpu", "disk") if opts.allow_disk else ("cpu",))]
        cands += offl
        runnable = [c for c in offl if c.status != "does-not-fit"]
        if runnable and chosen is None:
            best = max(runnable, key=lambda c: (c.speed.decode_tokens_per_s, -policy.QUALITY.get(c.precision, 9)))
            chosen = _chosen(best, lad.tried, gpu_counts, "offload")
    # 3. precisions the search may not choose unasked, shown beside the choice (MXFP4 without known kernels)
    for c in lad.shown:
        for n in gpu_counts:
            alt = build(c.precision, n, "none")
            if alt.status == "fits" or n == gpu_counts[-1]:
                cands.append(replace(alt, conditions=alt.conditions + (c.why_not,)))
                break
    if chosen is None:
        chosen = _closest_miss(cands, gpu_counts) or build(lad.tried[0], gpu_counts[-1], "none")
    alts = tuple(_dedupe(c for c in cands if c is not chosen and not _same(c, chosen)))
    return CheckResult(spec=spec, plan=chosen, alternatives=alts, refused=lad.refused, partition=part)


def _chosen(plan: Plan, ladder: tuple[str, ...], gpu_counts: list[int], how: str) -> Plan:
    where = f"{plan.gpus} x {plan.gpu_type}" if plan.gpus else "the CPU"
    better = [p for p in ladder if policy.QUALITY.get(p, 9) < policy.QUALITY.get(plan.precision, 9)]
    higher = f" ({', '.join(better)} do{'es' if len(better) == 1 else ''} not fit: see the alternatives)" if better else ""
    if how == "fits":
        fewest = "the fewest GPUs that hold it" if plan.gpus > 1 else "one GPU"
        reason = f"{plan.precision} is the highest precision that fits entirely on GPUs{higher}, on {fewest}: {where}"
    else:
        reason = (f"nothing fits entirely on {gpu_counts[-1]} GPU(s); {plan.precision} with "
                  f"{plan.status.replace('-', ' ')} is the fastest plan above the speed floor, on {where}")
    return replace(plan, reason=reason)


def _closest_miss(cands: list[Plan], gpu_counts: list[int]) -> Plan | None:
    """Nothing runs: the fastest plan that only failed the speed floor, else the all-GPU try on the most GPUs."""
    slow = [c for c in cands if c.rejection == Rejection.TOO_SLOW]
    if slow:
        return max(slow, key=lambda c: c.speed.decode_tokens_per_s)
    widest = [c for c in cands if c.gpus == gpu_counts[-1] and c.rejection is not None]
    return widest[0] if widest else None


def _any_precision(spec: ModelSpec, gpu, lad: policy.Ladder) -> str:
    return policy.native_precision(spec) or (lad.refused[0].precision if lad.refused else policy.compute_precision(gpu))


def _no_precision(spec: ModelSpec, gpu, lad: policy.Ladder, plan: Plan, part: Partition) -> CheckResult:
    why = "; ".join(f"{c.precision}: {c.why_not}" for c in lad.refused) or "no precision applies"
    reason = f"no precision can run {spec.model_id} on {gpu.name if gpu else 'CPU'} ({why})"
    plan = replace(plan, status="does-not-fit", rejection=Rejection.PRECISION, reason=reason)
    return CheckResult(spec=spec, plan=plan, alternatives=(), refused=lad.refused, partition=part)


def _key(p: Plan) -> tuple:
    """One alternative per key: a rejected candidate by what it tried and why it failed (the cpu and disk offload
    tries that fail for one reason are one fact, the wider try kept); a runnable one by where its weights live."""
    if p.status == "does-not-fit":
        return (p.precision, p.gpus, p.status, p.rejection)
    return (p.precision, p.gpus, p.status, tuple(sorted(set(p.device_map.values()))))


def _same(a: Plan, b: Plan) -> bool:
    return _key(a) == _key(b)


def _dedupe(cands) -> list[Plan]:
    out: dict[tuple, Plan] = {}
    for c in cands:
        k = _key(c)
        if k not in out or c.status == "does-not-fit":  # candidates come narrow to wide: keep the widest try
            out[k] = c
    return list(out.values())
