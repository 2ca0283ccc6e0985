"""`vplan check`, `vplan plan`, `vplan models`, `vplan gpus`: parse, call vplan.planner.api, render."""
from __future__ import annotations

import json
import shlex
import sys

import click

from vplan.planner import api
from vplan.planner.cli import display
from vplan.planner.cli.options import check_options_from, profile_from, replay_flags, workload_flag_names, workload_options
from vplan.planner.errors import UsageError


@click.command("check")
@click.argument("models", nargs=-1, required=True)
@workload_options
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable result (contract) instead of tables.")
@click.option("--explain", is_flag=True, help="Show each GPU's memory as a bar: weights / KV / activations / overhead / free.")
@click.option("--hardware", is_flag=True, help="Show the model across the GPU catalog (1/2/4/8 GPUs per node).")
@click.option("--all", "show_all", is_flag=True, help="List every alternative (the default shows the best per precision).")
@click.pass_context
def check_cmd(ctx, models, as_json, explain, hardware, show_all, **kw):
    """Which setups run MODELS, at which precision, with what offload, how fast, and why not."""
    profile = profile_from(kw)
    report = api.check(models, profile, check_options_from(kw, profile))
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, allow_nan=False))
        return
    display.print_check(report, explain=explain, show_all=show_all, replay=replay_flags(ctx, workload_flag_names()))
    if hardware:
        from vplan.planner.search.matrix import hardware_matrix

        for res in report.results:
            display.print_matrix(res.spec, hardware_matrix(res.spec, report.options.search))


@click.command("plan")
@click.argument("model")
@workload_options
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True, help="Plan file to write (JSON).")
@click.option("--force", is_flag=True, help="Overwrite an existing plan file.")
def plan_cmd(model, output, force, **kw):
    """Write the plan file for MODEL: the contract the runtime and render-sbatch follow."""
    from vplan.planner.plan import write_plan

    if kw.get("engine") == "all":
        raise UsageError("a plan file is for one engine: give --engine transformers or --engine vllm "
                         "(`vplan check --engine all` compares them)")
    profile = profile_from(kw)
    report = api.check([model], profile, check_options_from(kw, profile))
    plan = report.results[0].plan
    path = write_plan(plan, output, force=force)
    display.print_check(report, explain=False, next_steps=False)
    click.echo(f"wrote {path} (status {plan.status})", err=True)
    if plan.fits:
        click.echo(f"next: vplan render-sbatch {shlex.quote(str(path))} --input prompts.jsonl --output out.jsonl -o job.sh "
                   "(or --prompt TEXT, or -- CMD), then sbatch job.sh", err=True)
    else:
        click.echo("nothing runs on these nodes: see 'would run on' above, or `vplan check MODEL --hardware`", err=True)
        sys.exit(3)


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def models_cmd(as_json):
    """List the models in vplan's bundled offline catalog (planned without network access)."""
    from vplan.planner.source import catalog

    rows = catalog.entries()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    display.print_models(rows)


@click.command("gpus")
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
def gpus_cmd(as_json):
    """List the built-in GPU catalog (memory = what torch can allocate, with its source)."""
    from vplan.planner.hardware.gpus import GPU_CATALOG

    if as_json:
        click.echo(json.dumps([g.summary() for g in GPU_CATALOG.values()], indent=2))
        return
    display.print_gpus()
