"""`vplan render-sbatch` and `vplan cluster detect`: parse flags, call planner.sbatch / planner.detect, write.

Registered by vplan.planner.cli.main as ``render-sbatch`` and ``cluster``.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from vplan.planner.errors import UsageError
from vplan.planner.files import write_atomic


class _UserCommand(click.Command):
    """Everything after the first ``--`` is the job's command, kept verbatim (argv)."""

    def parse_args(self, ctx, args):
        if "--" in args:
            i = args.index("--")
            ctx.meta["vplan_command"] = tuple(args[i + 1:])
            if not ctx.meta["vplan_command"]:
                raise UsageError("nothing after `--`: give the job's command, e.g. -- python my_job.py")
            args = args[:i]
        return super().parse_args(ctx, args)


def _profile(cluster_file: str | None):
    from vplan.planner.hardware.cluster import default_profile
    from vplan.planner.slurm.profile_toml import load_profile

    return load_profile(cluster_file) if cluster_file else default_profile()


@click.command("render-sbatch", cls=_UserCommand)
@click.argument("plans", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--script", "output", type=click.Path(dir_okay=False), default=None,
              help="Script to write (chmod 755, atomic) [default: print to stdout].")
@click.option("--input", "input_path", type=click.Path(dir_okay=False), default=None,
              help='The job runs `vplan run PLAN --input FILE --output OUT`: JSONL of {"id", "prompt"} records.')
@click.option("--output", "run_output", type=click.Path(dir_okay=False), default=None,
              help="JSONL the job appends results to (with --input; arrays: one file per task, OUT with the task id).")
@click.option("--prompt", default=None, help="The job runs `vplan run PLAN --prompt TEXT` (the answer goes to its log).")
@click.option("--array", "as_array", is_flag=True, help="One job array over all PLANS (one script per GPU shape).")
@click.option("--cluster", "cluster_file", type=click.Path(dir_okay=False), default=None,
              help="Cluster profile TOML [default: 2 x A100 40 GB, 4 CPUs, 128 GB, 2 days].")
@click.option("--partition", default=None, help="Partition [default: the plan's, then the profile's default].")
@click.option("--constraint", default=None, help="SLURM --constraint [default: the partition's].")
@click.option("--time", "time_", default="auto", show_default=True,
              help="Job time limit (SLURM format) or auto: 1.5 x the plan's estimate for --requests + 10 min.")
@click.option("--requests", type=click.IntRange(1, 10_000_000), default=None,
              help="Sequences the job generates, for --time auto [default: the plan's workload].")
@click.option("--cpus-per-task", type=click.IntRange(1, 4096), default=None, help="Override the CPU rule (4/GPU, 8/GPU offloading).")
@click.option("--job-name", default=None, help="SLURM job name [default: vplan-<model>; arrays: vplan-array].")
@click.option("--log-dir", default=None, type=click.Path(file_okay=False),
              help="Folder for %x-%j.out/.err (created now) [default: the submit directory].")
@click.option("--force", is_flag=True,
              help="Overwrite the output, render does-not-fit plans, cap memory/time at the partition's limits.")
@click.pass_context
def render_sbatch_cmd(ctx, plans, output, input_path, run_output, prompt, as_array, cluster_file, partition, constraint,
                      time_, requests, cpus_per_task, job_name, log_dir, force):
    """Write the sbatch script for PLAN (or a job array for several), from the plan and the cluster profile.

    The job runs `vplan run "$VPLAN_PLAN"` on --input/--output or --prompt, or the command after `--`:

    \b
    vplan render-sbatch plan.json -o job.sh --input prompts.jsonl --output out.jsonl
    vplan render-sbatch plan.json -o job.sh -- python my_job.py --plan plan.json
    A vLLM plan's job starts vLLM's server on its node(s) first; the command finds it in $VPLAN_ENDPOINT
    (write '$VPLAN_ENDPOINT' in single quotes so the job expands it).
    """
    from vplan.planner.plan import read_plan
    from vplan.planner.slurm.render import render_arrays, render_sbatch
    from vplan.planner.slurm.resources import SbatchOptions

    if len(plans) > 1 and not as_array:
        raise UsageError(f"{len(plans)} plans given: pass --array for one job array, or render them one by one")
    profile = _profile(cluster_file)
    abs_paths = tuple(os.path.abspath(p) for p in plans)
    loaded = [read_plan(p) for p in abs_paths]
    if log_dir:
        log_dir = os.path.abspath(log_dir)
    opts = SbatchOptions(plan_path=abs_paths[0], plan_paths=abs_paths, partition=partition, constraint=constraint, time=time_,
                         requests=requests, cpus_per_task=cpus_per_task, job_name=job_name, log_dir=log_dir or "",
                         command=ctx.meta.get("vplan_command", ()), force=force, prompt=prompt,
                         input_path=os.path.abspath(input_path) if input_path else None,
                         output_path=os.path.abspath(run_output) if run_output else None)
    if not as_array:
        scripts = [("", render_sbatch(loaded[0], profile, opts))]
    else:
        scripts = [(g.suffix, text) for g, text in render_arrays(loaded, profile, opts)]
        if len(scripts) > 1 and not output:
            raise UsageError(f"the plans need {len(scripts)} GPU shapes, so {len(scripts)} array scripts: give -o FILE.sh to write them")
    if log_dir:
        try:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create --log-dir {log_dir} ({e.strerror or e}); choose a folder you can write to") from None
    _say_payload(opts, as_array)
    if not output:
        click.echo(scripts[0][1], nl=False)
        return
    out = Path(output)
    targets = [out.with_name(f"{out.stem}{suffix}{out.suffix}") for suffix, _ in scripts]
    if not force:
        for t in targets:
            if t.exists():
                raise UsageError(f"{t} exists; pass --force to overwrite it")
    for t, (_, text) in zip(targets, scripts):
        write_atomic(text, t, force=force, mode=0o755)
        click.echo(f"wrote {t}; submit with: sbatch {t}", err=True)


def _say_payload(opts, as_array: bool) -> None:
    """Which work the job does (stderr), and a missing --input file, which the job would fail on after its wait."""
    if opts.command:
        what = "the command after --"
    elif opts.prompt:
        what = "vplan run PLAN --prompt (the answer goes to the job's .out log)"
    else:
        per_task = " (one file per array task: the task id before the extension)" if as_array else ""
        what = f"vplan run PLAN --input {opts.input_path} --output {opts.output_path}{per_task}"
        if not os.path.isfile(opts.input_path):
            click.echo(f"note: {opts.input_path} does not exist here yet; the job reads it when it starts", err=True)
    click.echo(f"the job runs: {what}", err=True)


@click.group("cluster")
def cluster_group():
    """Cluster profiles: detect one from SLURM."""


@cluster_group.command("detect")
@click.option("--scontrol-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Saved output of `scontrol show node -o` instead of running it.")
@click.option("--sinfo-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Saved output of `sinfo -h -o '%P %a %l %D'` instead of running it.")
@click.option("--name", default="detected", show_default=True, help="Profile name.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None, help="TOML file to write [default: stdout].")
@click.option("--force", is_flag=True, help="Overwrite the output file.")
def detect_cmd(scontrol_file, sinfo_file, name, output, force):
    """Print a cluster profile (TOML) from `scontrol show node -o` and `sinfo` on a login node."""
    from vplan.planner.slurm.detect import detect

    sc = Path(scontrol_file).read_text() if scontrol_file else None
    si = Path(sinfo_file).read_text() if sinfo_file else None
    text = detect(sc, si, name=name)
    if output:
        p = write_atomic(text, output, force=force, mode=stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        click.echo(f"wrote {p}; check it, then use it with --cluster {p}", err=True)
    else:
        click.echo(text, nl=False)
