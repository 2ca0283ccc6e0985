"""What every rendered job shares, whatever its engine: the plan checks, the job's environment from the profile,
the payload (``vplan run`` or the user's command), the log names, and filling a template.

Pure: no I/O except reading the templates shipped in ``vplan.slurm_templates``. Every value placed in a script is
validated or shell-quoted here or in slurm.safety first; the templates only place pre-quoted strings.
"""
from __future__ import annotations

import re
import shlex
from importlib import resources

from vplan.planner.errors import NoFittingPlanError, UsageError
from vplan.planner.hardware.cluster import ClusterProfile
from vplan.planner.plan.contract import Plan
from vplan.planner.slurm.resources import Resources, SbatchOptions
from vplan.planner.slurm.safety import (LOGDIR_RE, REVISION_RE, check_text, no_token, shell_path_expr,
                                        validate_abs_path, validate_repo_id)


def check_plan(plan: Plan, options: SbatchOptions) -> None:
    validate_repo_id(plan.model_id, plan.source)
    if plan.revision is not None and not REVISION_RE.match(plan.revision):
        raise UsageError(f"plan revision {plan.revision!r} is not a branch, tag or commit; re-create the plan")
    if plan.status == "does-not-fit" and not options.force:
        raise NoFittingPlanError(
            f"plan {plan.model_id} does not fit: {plan.reason or 'no reason recorded'}; "
            "re-plan (vplan check lists what would run) or pass --force to render it anyway"
        )


JOB_VARIABLES = ("VPLAN_PLAN", "VPLAN_ENDPOINT", "VPLAN_MODEL", "VPLAN_PORT")  # what the job exports for the command


def _word(arg: str) -> str:
    """One argument, shell-quoted; a word that is exactly ``$VPLAN_X`` (or ``${VPLAN_X}``) of JOB_VARIABLES becomes
    ``"$VPLAN_X"``, expanded in the job. Nothing else expands."""
    name = arg[2:-1] if arg.startswith("${") and arg.endswith("}") else arg[1:] if arg.startswith("$") else ""
    return f'"${name}"' if name in JOB_VARIABLES else shlex.quote(arg)


PAYLOAD_NEEDED = ("the job needs work to do: --input prompts.jsonl --output out.jsonl, --prompt TEXT, or a command "
                  "after -- (e.g. -- python my_job.py); `vplan run` without them would stop right after the queue wait")


def payload(options: SbatchOptions, run: str, array: bool = False, hint: str = "") -> str:
    """The job's last line: the user's command (argv after ``--``, quoted word by word), or ``run`` (the engine's
    ``vplan run "$VPLAN_PLAN" ...``) with the work it needs; never a job that cannot run. ``hint`` ends the
    error when none is given (what the engine's job offers a command)."""
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
        return " ".join(_word(a) for a in options.command)
    if options.prompt:
        if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", options.prompt):
            raise UsageError("--prompt has control characters; put such prompts in a JSONL file for --input")
        no_token(options.prompt, "--prompt")
        return f"{run} --prompt {shlex.quote(options.prompt)}"
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
        return f"{run} --input {src} --output {dst_sh}"
    raise UsageError(PAYLOAD_NEEDED + hint)


def log_stem(options: SbatchOptions, array: bool) -> str:
    """``[log_dir/]%x-%j`` (arrays: ``%x-%A_%a``) for --output/--error."""
    if options.log_dir and not LOGDIR_RE.match(options.log_dir):
        raise UsageError(f"--log-dir {options.log_dir!r} is invalid: use letters, digits and / . _ - + only")
    return (options.log_dir.rstrip("/") + "/" if options.log_dir else "") + ("%x-%A_%a" if array else "%x-%j")


def directives(res: Resources, job_name: str, stem: str, layout: list[str]) -> list[str]:
    """The #SBATCH lines in their fixed order; ``layout`` is the nodes/tasks request (e.g. --nodes=1 --ntasks=1)."""
    out = [f"--job-name={job_name}", f"--partition={res.partition}", *layout]
    if res.gpu_flag:
        out.append(res.gpu_flag)
    out += [f"--cpus-per-task={res.cpus_per_task}", res.mem_flag, res.time_flag]
    if res.constraint:
        out.append(f"--constraint={res.constraint}")
    return out + [f"--output={stem}.out", f"--error={stem}.err"]


def environment(profile: ClusterProfile) -> dict:
    """The job's environment from the profile: HF cache, offline mode, the verbatim setup lines."""
    for line in profile.setup:
        no_token(line, "a setup line of the cluster profile")
    return {
        "hf_home": shell_path_expr(profile.hf_home, "hf_home") if profile.hf_home else None,
        "offline": not profile.compute_nodes_online,
        "setup": list(profile.setup),
    }


def echo_lines(lines: list[str]) -> list[str]:
    return [shlex.quote(f"[vplan] {check_text(x, 'plan field')}") for x in lines]


def render_template(template: str, ctx: dict) -> str:
    import jinja2

    pkg = resources.files("vplan.slurm_templates")
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: pkg.joinpath(name).read_text()),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )
    return env.get_template(template).render(**ctx)
