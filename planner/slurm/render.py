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

import re
import shlex
from dataclasses import dataclass, replace
from importlib import resources
from typing import Sequence

from vplan.planner.errors import NoFittingPlanError, UsageError
from vplan.planner.hardware.cluster import ClusterProfile
from vplan.planner.plan.contract import ALLOC_CONF, Plan
from vplan.planner.slurm.resources import Resources, SbatchOptions, compute_resources, partition_for
from vplan.planner.slurm.safety import (LOGDIR_RE, REVISION_RE, check_text, no_token, sanitise_job_name,
                                        shell_path_expr, validate_abs_path, validate_name, validate_repo_id)
from vplan.planner.units import GIB


def _check_plan(plan: Plan, options: SbatchOptions) -> None:
    validate_repo_id(plan.model_id, plan.source)
    if plan.revision is not None and not REVISION_RE.match(plan.revision):
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
    return [check_text(x, "plan field") for x in lines]


PAYLOAD_NEEDED = ("the job needs work to do: --input prompts.jsonl --output out.jsonl, --prompt TEXT, or a command "
                  "after -- (e.g. -- python my_job.py); `vplan run` without them would stop right after the queue wait")


def _payload(options: SbatchOptions, array: bool = False) -> str:
    """The job's last line: the user's command, or `vplan run` with the work it needs; never a job that cannot run."""
    given = [x for x in ("command", "prompt", "input_path") if getattr(options, x)]
    if len(given) > 1:
        raise UsageError("give one of: a command after --, --prompt, or --input/--output")
    if options.output_path and not options.input_path:
        raise UsageError("--output needs --input prompts.jsonl (a --prompt's answer goes to the job's log)")
    if options.command:
        for a in options.command:
            if "\x00" in a:
                raise UsageError("a command argument contains a NUL byte; remove it")
            no_token(a, "the command")
        return " ".join(shlex.quote(a) for a in options.command)
    if options.prompt:
        if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", options.prompt):
            raise UsageError("--prompt has control characters; put such prompts in a JSONL file for --input")
        no_token(options.prompt, "--prompt")
        return f'vplan run "$VPLAN_PLAN" --prompt {shlex.quote(options.prompt)}'
    if options.input_path:
        if not options.output_path:
            raise UsageError("--input needs --output out.jsonl (the job appends results there; a rerun resumes)")
        src = shlex.quote(validate_abs_path(options.input_path, "--input"))
        dst = validate_abs_path(options.output_path, "--output")
        if array:  # one results file per task: out.jsonl -> out.<task id>.jsonl
            stem, dot, ext = dst.rpartition(".") if "." in dst.rsplit("/", 1)[-1] else (dst, "", "")
            dst_sh = shlex.quote(stem) + '."${SLURM_ARRAY_TASK_ID}"' + (shlex.quote(dot + ext) if dot else "")
        else:
            dst_sh = shlex.quote(dst)
        return f'vplan run "$VPLAN_PLAN" --input {src} --output {dst_sh}'
    raise UsageError(PAYLOAD_NEEDED)


def _context(profile: ClusterProfile, options: SbatchOptions, res: Resources, job_name: str, array: bool) -> dict:
    part = profile.partition(res.partition)
    if options.log_dir and not LOGDIR_RE.match(options.log_dir):
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
        no_token(line, "a setup line of the cluster profile")
    return {
        "directives": directives,
        "notes": list(res.notes),
        "hf_home": shell_path_expr(profile.hf_home, "hf_home") if profile.hf_home else None,
        "offline": not profile.compute_nodes_online,
        "scratch": shell_path_expr(part.local_scratch, f"local_scratch of partition {part.name!r}"),
        "alloc_conf": ALLOC_CONF,
        "setup": list(profile.setup),
        "payload": _payload(options, array),
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
                      "summary": check_text(f"{plan.model_id} {plan.precision} {plan.status} {plan.gpus} GPU, "
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
