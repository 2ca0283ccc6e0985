"""The sbatch request of a plan on a cluster profile: partition, GPUs, CPUs, memory, time.

Pure: no I/O except reading the templates shipped in ``vplan.slurm_templates``; no clock, no
environment (a token in the caller's environment can never reach a script). Every value that reaches
the script is validated here and shell-quoted before the template sees it; the templates only place
pre-quoted strings.

Resource rules (stated in the script header too):
- GPUs: ``--gres=gpu[:TYPE]:N`` or ``--gpus-per-node=[TYPE:]N`` (``profile.gpu_request``).
- CPUs: 4 per GPU, at least 2; 8 per GPU (at least 8) when weights live in host RAM or on disk;
  every CPU of the node for CPU-only plans; never more than the partition has.
- Memory: the plan's host RAM + max(10 %, 4 GiB), rounded up to whole GiB (MiB when the GiB round-up
  would pass the node); above the partition's memory is an error unless ``force`` (then capped).
- Time: ``auto`` = 1.5 x (load + prefill + decode of the requests) + 10 min, rounded up to minutes;
  above the partition's MaxTime is an error unless ``force`` (then capped).

Arrays: tasks of one script share one resource request, so ``render_arrays`` splits the plans by
GPU shape (partition, GPU type, GPU count): one array script per shape, each asking for the largest
memory, CPUs and time of its tasks. Sharing one request across GPU counts would make a 1-GPU model
hold 2 GPUs (half of a 2-GPU node idle per task); memory and time differences cost far less than a
GPU, so they are maxed rather than split.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vplan.planner.errors import ClusterError, UsageError
from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.plan.contract import Plan
from vplan.planner.slurm.safety import CONSTRAINT_RE, GRES_TYPE_RE, check_text, validate_name
from vplan.planner.units import GIB, MIB, format_duration_slurm, parse_duration_s

MEM_MARGIN_PERCENT = 10
MEM_MARGIN_MIN_BYTES = 4 * GIB
TIME_SAFETY_FACTOR = 1.5
TIME_EXTRA_S = 600
CPUS_PER_GPU = 4
CPUS_PER_GPU_OFFLOAD = 8
MIN_CPUS = 2
MIN_CPUS_OFFLOAD = 8

@dataclass(frozen=True)
class SbatchOptions:
    """What render-sbatch adds to the plan. ``plan_path``/``plan_paths`` must be absolute."""

    plan_path: str = ""  # single script: exported as VPLAN_PLAN
    plan_paths: tuple[str, ...] = ()  # arrays: one per plan, same order
    partition: str | None = None  # default: the plan's partition, then the profile's default
    constraint: str | None = None  # default: the partition's constraint
    time: str = "auto"  # "auto" or a SLURM time (MM, HH:MM:SS, D-HH:MM:SS)
    requests: int | None = None  # overrides plan.workload.requests for --time auto
    cpus_per_task: int | None = None  # default: the rule in the module docstring
    job_name: str | None = None  # default: vplan-<model> (arrays: vplan-array)
    log_dir: str = ""  # where %x-%j.out/.err go ("" = the submit directory); must exist at submit time
    command: tuple[str, ...] = ()  # the user's command (argv), or one of:
    prompt: str | None = None  # vplan run "$VPLAN_PLAN" --prompt TEXT
    input_path: str | None = None  # vplan run "$VPLAN_PLAN" --input FILE --output FILE (absolute paths)
    output_path: str | None = None  # arrays: one file per task, FILE with the task id before its extension
    force: bool = False  # render does-not-fit plans; cap memory/time at the partition's limits


@dataclass(frozen=True)
class Resources:
    partition: str
    gpus: int
    gpu_flag: str | None  # "--gres=gpu:a100:2" / "--gpus-per-node=2" / None (CPU-only)
    cpus_per_task: int
    mem_bytes: int  # what is requested
    mem_flag: str  # "--mem=45G"
    time_s: int
    time_flag: str  # "--time=01:10:00"
    constraint: str | None
    notes: tuple[str, ...] = ()  # how each figure was chosen, for the header


def partition_for(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> Partition:
    name = options.partition or plan.cluster.partition or profile.default_partition
    validate_name(str(name), "partition")
    names = {p.name for p in profile.partitions}
    if name not in names and not options.partition:
        name = profile.default_partition  # the plan came from another profile; check against this one's default
    return profile.partition(name)


def _check_gpus(plan: Plan, part: Partition) -> None:
    if plan.gpus <= 0:
        return
    if part.gpus_per_node <= 0 or part.gpu is None:
        raise ClusterError(f"plan {plan.model_id} needs {plan.gpus} GPU(s) but partition {part.name!r} has no GPUs; pick a GPU partition with --partition")
    if plan.gpus > part.gpus_per_node:
        raise ClusterError(
            f"plan {plan.model_id} needs {plan.gpus} GPUs but nodes of partition {part.name!r} have {part.gpus_per_node}; "
            f"re-plan with --max-gpus {part.gpus_per_node} or pick another partition"
        )
    if plan.gpu_type and plan.gpu_type != part.gpu.name:
        raise ClusterError(
            f"plan {plan.model_id} was made for {plan.gpu_type} but partition {part.name!r} has {part.gpu.name}; "
            "re-plan for this partition (vplan plan --partition ...)"
        )


def gres_type(profile: ClusterProfile, part: Partition) -> str:
    """The GRES type string of the partition's GPUs: the profile's, else the catalog's short alias."""
    name = profile.gres_type_name
    if not name and part.gpu is not None:
        name = part.gpu.aliases[0] if part.gpu.aliases else part.gpu.name.lower()
    if not name or not GRES_TYPE_RE.match(name):
        raise ClusterError(f"profile {profile.name!r}: gres_typed is set but the GRES type name {name!r} is missing or invalid; set gres_type_name")
    return name


def gpu_flag(profile: ClusterProfile, part: Partition, gpus: int) -> str | None:
    if gpus <= 0:
        return None
    typed = f"{gres_type(profile, part)}:" if profile.gres_typed else ""
    if profile.gpu_request == "gpus-per-node":
        return f"--gpus-per-node={typed}{gpus}"
    return f"--gres=gpu:{typed}{gpus}"


def default_cpus(plan: Plan, part: Partition) -> int:
    if plan.gpus <= 0:
        want = part.cpus_per_node
    elif plan.status in ("cpu-offload", "disk-offload"):
        want = max(MIN_CPUS_OFFLOAD, CPUS_PER_GPU_OFFLOAD * plan.gpus)
    else:
        want = max(MIN_CPUS, CPUS_PER_GPU * plan.gpus)
    return max(1, min(part.cpus_per_node, want))


def mem_request_bytes(host_ram_bytes: int) -> int:
    """Host RAM plus the margin: +10 % and at least 4 GiB."""
    return host_ram_bytes + max(-(-host_ram_bytes * MEM_MARGIN_PERCENT // 100), MEM_MARGIN_MIN_BYTES)


def _mem_flag(want_bytes: int, limit_bytes: int) -> tuple[int, str]:
    gib_up = -(-want_bytes // GIB)
    if gib_up * GIB <= limit_bytes:
        return gib_up * GIB, f"--mem={gib_up}G"
    mib_up = -(-want_bytes // MIB)
    return mib_up * MIB, f"--mem={mib_up}M"


def auto_time_s(plan: Plan, requests: int | None = None) -> int:
    n = plan.workload.requests if requests is None else requests
    seconds = plan.speed.job_seconds(n) * TIME_SAFETY_FACTOR + TIME_EXTRA_S
    return int(-(-math.ceil(seconds) // 60) * 60)


def compute_resources(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> Resources:
    """The sbatch request for one plan on this profile, or a clear error naming the numbers."""
    part = partition_for(plan, profile, options)
    _check_gpus(plan, part)
    notes: list[str] = []

    if options.cpus_per_task is not None:
        if not 1 <= options.cpus_per_task <= part.cpus_per_node:
            raise ClusterError(f"--cpus-per-task {options.cpus_per_task} is outside 1..{part.cpus_per_node} (CPUs per node of {part.name!r})")
        cpus = options.cpus_per_task
    else:
        cpus = default_cpus(plan, part)
        notes.append(f"cpus: {cpus} ({CPUS_PER_GPU}/GPU, >= {MIN_CPUS}; {CPUS_PER_GPU_OFFLOAD}/GPU with offload; <= {part.cpus_per_node} per node)")

    want = mem_request_bytes(plan.host_ram_bytes)
    limit = (part.mem_bytes // MIB) * MIB
    if want > limit:
        msg = (f"plan {plan.model_id} needs {plan.host_ram_bytes / GIB:.1f} GiB host RAM, {want / GIB:.1f} GiB with the margin, "
               f"but nodes of partition {part.name!r} have {part.mem_bytes / GIB:.1f} GiB")
        if not options.force:
            raise ClusterError(msg + "; re-plan with less CPU offload (--no-offload / more GPUs) or pass --force to request the whole node")
        mem_bytes, mflag = limit, f"--mem={limit // MIB}M"
        notes.append("WARNING (--force): " + msg + "; requesting the whole node")
    else:
        mem_bytes, mflag = _mem_flag(want, limit)
        notes.append(f"mem: host RAM {plan.host_ram_bytes / GIB:.1f} GiB + max({MEM_MARGIN_PERCENT} %, "
                     f"{MEM_MARGIN_MIN_BYTES // GIB} GiB) margin, rounded up")

    max_s = part.max_time_s or None
    if options.time == "auto":
        requests = options.requests if options.requests is not None else plan.workload.requests
        time_s = auto_time_s(plan, requests)
        what = (f"auto time {format_duration_slurm(time_s)} ({TIME_SAFETY_FACTOR:g} x {plan.speed.job_seconds(requests):.0f} s "
                f"for {requests} request(s) + {TIME_EXTRA_S // 60} min)")
        notes.append("time: " + what)
    else:
        check_text(options.time, "--time")
        time_s = parse_duration_s(options.time)
        if time_s <= 0:
            raise UsageError(f"--time {options.time!r} must be a positive SLURM time such as 02:00:00 or 1-00:00:00 (or auto)")
        what = f"--time {options.time}"
    if max_s and time_s > max_s:
        msg = f"{what} exceeds the MaxTime {format_duration_slurm(max_s)} of partition {part.name!r}"
        if not options.force:
            raise ClusterError(msg + "; pass --requests fewer per job (split into an array), --time within the limit, or --force to cap it")
        notes.append(f"WARNING (--force): {msg}; capped")
        time_s = max_s
    tflag = f"--time={format_duration_slurm(time_s)}"

    constraint = options.constraint if options.constraint is not None else part.constraint
    if constraint:
        if not CONSTRAINT_RE.match(constraint):
            raise UsageError(f"constraint {constraint!r} is invalid: use feature names with & | , : * ( ) [ ] only")
    return Resources(partition=part.name, gpus=plan.gpus, gpu_flag=gpu_flag(profile, part, plan.gpus), cpus_per_task=cpus,
                     mem_bytes=mem_bytes, mem_flag=mflag, time_s=time_s, time_flag=tflag, constraint=constraint or None,
                     notes=tuple(notes))


