"""sbatch scripts from a Plan and a cluster profile: the templates in ``vplan.slurm_templates``, filled with
values that slurm.safety validated and quoted and slurm.resources sized.

Pure: no I/O except reading the templates; no clock, no environment (a token in the caller's environment can
never reach a script).

Arrays: tasks of one script share one resource request, so ``render_arrays`` splits the plans by GPU shape
(partition, GPU type, GPU count): one array script per shape, each asking for the largest memory, CPUs and time
of its tasks. Sharing one request across GPU counts would make a 1-GPU model hold 2 GPUs (half of a 2-GPU node
idle per task); memory and time differences cost far less than a GPU, so they are maxed rather than split.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, replace
from typing import Sequence

from vplan.planner.errors import UsageError
from vplan.planner.hardware.cluster import ClusterProfile
from vplan.planner.plan.contract import ALLOC_CONF, Plan
from vplan.planner.slurm.resources import Resources, SbatchOptions, compute_resources, partition_for
from vplan.planner.slurm.safety import check_text, sanitise_job_name, shell_path_expr, validate_abs_path, validate_name
from vplan.planner.slurm.script import (check_plan, directives, echo_lines, environment, log_stem, payload,
                                        render_template)
from vplan.planner.slurm.vllm import render_vllm
from vplan.planner.units import GIB


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
    return [check_text(x, "plan field") for x in lines]


def _context(profile: ClusterProfile, options: SbatchOptions, res: Resources, job_name: str, array: bool) -> dict:
    part = profile.partition(res.partition)
    return {
        **environment(profile),
        "directives": directives(res, job_name, log_stem(options, array), ["--nodes=1", "--ntasks=1"]),
        "notes": list(res.notes),
        "scratch": shell_path_expr(part.local_scratch, f"local_scratch of partition {part.name!r}"),
        "alloc_conf": ALLOC_CONF,
        "payload": payload(options, 'vplan run "$VPLAN_PLAN"', array),
    }


def render_sbatch(plan: Plan, profile: ClusterProfile, options: SbatchOptions) -> str:
    """The sbatch script for one plan (a vLLM plan: planner/slurm/vllm.py); raises VplanError subclasses with the
    numbers when it cannot run."""
    if plan.engine == "vllm":
        return render_vllm(plan, profile, options)
    check_plan(plan, options)
    path = validate_abs_path(options.plan_path, "plan path")
    res = compute_resources(plan, profile, options)
    job_name = validate_name(options.job_name, "--job-name") if options.job_name else sanitise_job_name(plan.model_id)
    ctx = _context(profile, options, res, job_name, array=False)
    header = _header(plan, path)
    ctx.update(header=header, plan_path=shlex.quote(path), header_echo=echo_lines(header[:4]))
    return render_template("job.sh.j2", ctx)


@dataclass(frozen=True)
class ArrayGroup:
    key: tuple  # (partition, gpu type, gpus)
    indices: tuple[int, ...]  # positions in the plans given
    suffix: str  # "" when there is one group, else "-<partition>-<N>gpu"


def group_plans(plans: Sequence[Plan], profile: ClusterProfile, options: SbatchOptions) -> list[ArrayGroup]:
    """Split plans by GPU shape (partition, GPU type, GPU count), in first-seen order."""
    groups: dict[tuple, list[int]] = {}
    for i, plan in enumerate(plans):
        part = partition_for(plan, profile, options)
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
        if plan.engine == "vllm":
            raise UsageError(f"{plan.model_id} is a vLLM plan: each runs its own server job; render it alone, without --array")
        check_plan(plan, options)
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
                      "summary": check_text(f"{plan.model_id} {plan.precision} {plan.status} {plan.gpus} GPU, "
                                             f"{r.mem_flag[6:]} {r.time_flag[7:]}", "plan field")})
    ctx.update(tasks=tasks)
    return render_template("array.sh.j2", ctx)


def render_arrays(plans: Sequence[Plan], profile: ClusterProfile, options: SbatchOptions) -> list[tuple[ArrayGroup, str]]:
    """One array script per GPU shape (see the module docstring for why)."""
    out = []
    for g in group_plans(plans, profile, options):
        sub = replace(options, plan_paths=tuple(options.plan_paths[i] for i in g.indices))
        out.append((g, render_array([plans[i] for i in g.indices], profile, sub)))
    return out
