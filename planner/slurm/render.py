"""sbatch scripts from a Plan and a cluster profile: resources, validation, quoting, rendering.

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
import re
import shlex
from dataclasses import dataclass, replace
from importlib import resources
from typing import Sequence

from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.errors import ClusterError, NoFittingPlanError, UsageError
from vplan.planner.plan.contract import Plan
from vplan.planner.units import GIB, MIB, format_duration_slurm, parse_duration_s

MEM_MARGIN_PERCENT = 10
MEM_MARGIN_MIN_BYTES = 4 * GIB
TIME_SAFETY_FACTOR = 1.5
TIME_EXTRA_S = 600
CPUS_PER_GPU = 4
CPUS_PER_GPU_OFFLOAD = 8
MIN_CPUS = 2
MIN_CPUS_OFFLOAD = 8
ALLOC_CONF = "expandable_segments:True"

_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # partitions, job names
_CONSTRAINT_RE = re.compile(r"^[A-Za-z0-9_.&|,:*()\[\]-]{1,256}$")
_LOGDIR_RE = re.compile(r"^[A-Za-z0-9._/+-]{1,1024}$")
_GRES_TYPE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# A path that may use ${VAR}, $VAR and ${VAR:-default}: safe inside double quotes (no $( or backticks).
_PATH_EXPR_RE = re.compile(r"^(?:[A-Za-z0-9._/+@%=~,-]|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[A-Za-z0-9._/+@,-]*)?\})+$")
_TOKEN_RE = re.compile(r"(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HUGGINGFACE_TOKEN)\s*=|\bhf_[A-Za-z0-9]{30,}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


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
    command: tuple[str, ...] = ()  # the user's command (argv); default: vplan run "$VPLAN_PLAN"
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


# ---------------------------------------------------------------- validation and quoting

def _check_text(value: str, what: str) -> str:
    if _CONTROL_RE.search(value):
        raise UsageError(f"{what} {value!r} contains control characters (newline, tab, NUL, ...); remove them")
    return value


def validate_repo_id(model_id: str, source: str = "hub") -> str:
    """Hub ids `org/name`; a local plan's id is a path, checked for control characters only (it only
    reaches comments and, sanitised, the job name)."""
    if source == "local":
        return _check_text(model_id, "model path")
    if not _REPO_RE.match(model_id) or ".." in model_id:
        raise UsageError(f"model id {model_id!r} is not a Hub repo id (org/name with letters, digits, . _ -); re-create the plan")
    return model_id


def validate_name(value: str, what: str) -> str:
    if not _NAME_RE.match(value):
        raise UsageError(f"{what} {value!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def validate_abs_path(path: str, what: str) -> str:
    _check_text(path, what)
    if not path.startswith("/"):
        raise UsageError(f"{what} {path!r} must be an absolute path (the job may start in another directory)")
    return path


def shell_path_expr(value: str, what: str) -> str:
    """A path that may expand ``$VAR``/``${VAR:-default}`` on the node, double-quoted; nothing else expands."""
    if not _PATH_EXPR_RE.match(value):
        raise UsageError(
            f"{what} {value!r} is not a plain path: use letters, digits, / . _ - + and $VAR or ${{VAR:-default}} only"
        )
    return f'"{value}"'


def _no_token(text: str, what: str) -> str:
    if _TOKEN_RE.search(text):
        raise UsageError(f"{what} contains a Hugging Face token; never put tokens in job scripts: run `hf auth login` on the cluster instead")
    return text


def sanitise_job_name(model_id: str) -> str:
    """``meta-llama/Llama-3.1-8B`` -> ``vplan-Llama-3.1-8B`` (SLURM job names: letters, digits, . _ -)."""
    base = model_id.rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "model"
    return f"vplan-{base}"[:64]


# ---------------------------------------------------------------- resources

def _partition_for(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> Partition:
    name = options.partition or plan.cluster.get("partition") or profile.default_partition
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
    if not name or not _GRES_TYPE_RE.match(name):
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
    wl = plan.workload if requests is None else replace(plan.workload, requests=requests)
    seconds = plan.speed.job_seconds(wl) * TIME_SAFETY_FACTOR + TIME_EXTRA_S
    return int(-(-math.ceil(seconds) // 60) * 60)


def compute_resources(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> Resources:
    """The sbatch request for one plan on this profile, or a clear error naming the numbers."""
    part = _partition_for(plan, profile, options)
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
        what = (f"auto time {format_duration_slurm(time_s)} ({TIME_SAFETY_FACTOR:g} x {plan.speed.job_seconds(replace(plan.workload, requests=requests)):.0f} s "
                f"for {requests} request(s) + {TIME_EXTRA_S // 60} min)")
        notes.append("time: " + what)
    else:
        _check_text(options.time, "--time")
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
        if not _CONSTRAINT_RE.match(constraint):
            raise UsageError(f"constraint {constraint!r} is invalid: use feature names with & | , : * ( ) [ ] only")
    return Resources(partition=part.name, gpus=plan.gpus, gpu_flag=gpu_flag(profile, part, plan.gpus), cpus_per_task=cpus,
                     mem_bytes=mem_bytes, mem_flag=mflag, time_s=time_s, time_flag=tflag, constraint=constraint or None,
                     notes=tuple(notes))


# ---------------------------------------------------------------- rendering

def _check_plan(plan: Plan, options: SbatchOptions) -> None:
    validate_repo_id(plan.model_id, plan.source)
    if plan.revision is not None and not _REVISION_RE.match(plan.revision):
        raise UsageError(f"plan revision {plan.revision!r} is not a branch, tag or commit; re-create the plan")
    if plan.status == "does-not-fit" and not options.force:
        raise NoFittingPlanError(
            f"plan {plan.model_id} does not fit: {plan.reason or 'no reason recorded'}; "
            "re-plan (vplan check lists what would run) or pass --force to render it anyway"
        )


def _header(plan: Plan, path: str) -> list[str]:
    gpus = ", ".join(f"GPU {d.device} {d.total_bytes / GIB:.1f} GiB of {d.capacity_bytes / GIB:.1f} GiB" for d in plan.gpu_devices) or "none (CPU only)"
    lines = [
        f"model: {plan.model_id} @ {plan.revision or 'unpinned revision'} ({plan.source})",
        f"plan: {path}" + (f" (created {plan.created_at}, vplan {plan.vplan_version})" if plan.created_at else ""),
        f"status: {plan.status}; precision {plan.precision} (compute {plan.dtype}); {plan.gpus} x {plan.gpu_type or 'no GPU'}",
        f"planned GPU memory: {gpus}",
        f"host RAM: {plan.host_ram_bytes / GIB:.1f} GiB; offload folder: {plan.disk_bytes / GIB:.1f} GiB",
        f"speed: ~{plan.speed.decode_tokens_per_s:.3g} decode tokens/s, load ~{plan.speed.load_seconds:.0f} s (estimates, see the plan's assumptions)",
    ]
    if plan.status == "does-not-fit":
        lines.append(f"WARNING (--force): the plan does not fit: {plan.reason or 'no reason recorded'}")
    return [_check_text(x, "plan field") for x in lines]


def _payload(options: SbatchOptions) -> str:
    if options.command:
        for a in options.command:
            if "\x00" in a:
                raise UsageError("a command argument contains a NUL byte; remove it")
            _no_token(a, "the command")
        return " ".join(shlex.quote(a) for a in options.command)
    return 'vplan run "$VPLAN_PLAN"'


def _context(profile: ClusterProfile, options: SbatchOptions, res: Resources, job_name: str, array: bool) -> dict:
    part = profile.partition(res.partition)
    if options.log_dir and not _LOGDIR_RE.match(options.log_dir):
        raise UsageError(f"--log-dir {options.log_dir!r} is invalid: use letters, digits and / . _ - + only")
    stem = (options.log_dir.rstrip("/") + "/" if options.log_dir else "") + ("%x-%A_%a" if array else "%x-%j")
    directives = [f"--job-name={job_name}", f"--partition={res.partition}", "--nodes=1", "--ntasks=1",
                  f"--cpus-per-task={res.cpus_per_task}", res.mem_flag, res.time_flag]
    if res.gpu_flag:
        directives.insert(4, res.gpu_flag)
    if res.constraint:
        directives.append(f"--constraint={res.constraint}")
    directives += [f"--output={stem}.out", f"--error={stem}.err"]
    for line in profile.setup:
        _no_token(line, "a setup line of the cluster profile")
    return {
        "directives": directives,
        "notes": list(res.notes),
        "hf_home": shell_path_expr(profile.hf_home, "hf_home") if profile.hf_home else None,
        "offline": not profile.compute_nodes_online,
        "scratch": shell_path_expr(part.local_scratch, f"local_scratch of partition {part.name!r}"),
        "alloc_conf": ALLOC_CONF,
        "setup": list(profile.setup),
        "payload": _payload(options),
    }


def _render(template: str, ctx: dict) -> str:
    import jinja2

    pkg = resources.files("vplan.slurm_templates")
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: pkg.joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )
    return env.get_template(template).render(**ctx)


def render_sbatch(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> str:
    """The sbatch script for one plan; raises VplanError subclasses with the numbers when it cannot run."""
    _check_plan(plan, options)
    path = validate_abs_path(options.plan_path, "plan path")
    res = compute_resources(plan, profile, options)
    job_name = validate_name(options.job_name, "--job-name") if options.job_name else sanitise_job_name(plan.model_id)
    ctx = _context(profile, options, res, job_name, array=False)
    header = _header(plan, path)
    ctx.update(header=header, plan_path=shlex.quote(path), header_echo=[shlex.quote(f"[vplan] {x}") for x in header[:4]])
    return _render("job.sh.j2", ctx)


@dataclass(frozen=True)
class ArrayGroup:
    key: tuple  # (partition, gpu type, gpus)
    indices: tuple[int, ...]  # positions in the plans given
    suffix: str  # "" when there is one group, else "-<partition>-<N>gpu"


def group_plans(plans: Sequence[Plan], profile: ClusterProfile, options: SbatchOptions) -> list[ArrayGroup]:
    """Split plans by GPU shape (partition, GPU type, GPU count), in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        part = _partition_for(plan, profile, options)
        key = (part.name, part.gpu.name if (part.gpu and plan.gpus) else None, plan.gpus)
        groups.setdefault(key, []).append(i)
    many = len(groups) > 1
    return [ArrayGroup(k, tuple(v), f"-{k[0]}-{k[2]}gpu" if many else "") for k, v in groups.items()]


def render_array(plans: Sequence[Plan], profile: ClusterProfile, options: SbatchOptions) -> str:
    """One array script for plans of one GPU shape; per-task plan picked by $SLURM_ARRAY_TASK_ID."""
    if not plans:
        raise UsageError("no plans given for the array")
    if len(options.plan_paths) != len(plans):
        raise UsageError(f"{len(plans)} plans but {len(options.plan_paths)} plan paths")
    groups = group_plans(plans, profile, options)
    if len(groups) > 1:
        shapes = "; ".join(f"{k[0]} x{k[2]} GPU: {len(g.indices)} plan(s)" for g in groups for k in [g.key])
        raise UsageError(f"the plans need different GPU shapes ({shapes}); use render_arrays (one script per shape)")
    paths = [validate_abs_path(p, "plan path") for p in options.plan_paths]
    per_task = []
    for plan in plans:
        _check_plan(plan, options)
        per_task.append(compute_resources(plan, profile, options))
    # one request for all tasks: the largest of each figure (already checked against the partition)
    big = max(per_task, key=lambda r: (r.mem_bytes, r.time_s, r.cpus_per_task))
    res = replace(big, cpus_per_task=max(r.cpus_per_task for r in per_task), mem_bytes=max(r.mem_bytes for r in per_task),
                  mem_flag=max(per_task, key=lambda r: r.mem_bytes).mem_flag, time_s=max(r.time_s for r in per_task),
                  time_flag=max(per_task, key=lambda r: r.time_s).time_flag,
                  notes=("each task gets the largest CPUs, memory and time of the tasks below",))
    job_name = validate_name(options.job_name, "--job-name") if options.job_name else "vplan-array"
    ctx = _context(profile, options, res, job_name, array=True)
    ctx["directives"].insert(1, f"--array=0-{len(plans) - 1}")
    tasks = []
    for i, (plan, path, r) in enumerate(zip(plans, paths, per_task)):
        tasks.append({"index": i, "path": shlex.quote(path), "header": _header(plan, path),
                      "summary": _check_text(f"{plan.model_id} {plan.precision} {plan.status} {plan.gpus} GPU, "
                                             f"{r.mem_flag[6:]} {r.time_flag[7:]}", "plan field")})
    ctx.update(tasks=tasks)
    return _render("array.sh.j2", ctx)


def render_arrays(plans: Sequence[Plan], profile: ClusterProfile, options: SbatchOptions) -> list[tuple[ArrayGroup, str]]:
    """One array script per GPU shape (see the module docstring for why)."""
    out = []
    for g in group_plans(plans, profile, options):
        sub = replace(options, plan_paths=tuple(options.plan_paths[i] for i in g.indices))
        out.append((g, render_array([plans[i] for i in g.indices], profile, sub)))
    return out
