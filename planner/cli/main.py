"""The `vplan` command line: parse flags, call the library, render. No planning logic lives here.

One `main()` maps every VplanError to one line and its exit code; `VPLAN_DEBUG=1` shows tracebacks.
"""
from __future__ import annotations

import json
import os
import sys

import click

from vplan.planner.errors import UsageError, VplanError

WORKLOAD_DEFAULTS = {"context": 4096, "max_new_tokens": 512, "batch": 1}


def _workload_options(f):
    opts = [
        click.option("--context", "context_tokens", type=click.IntRange(1, 10_000_000), default=WORKLOAD_DEFAULTS["context"],
                     show_default=True, help="Tokens cached per sequence (prompt + generated): sizes the KV cache."),
        click.option("--prompt-tokens", type=click.IntRange(1, 10_000_000), default=None,
                     help="Prefill length that sets the activation peak [default: the context]."),
        click.option("--max-new-tokens", type=click.IntRange(1, 10_000_000), default=WORKLOAD_DEFAULTS["max_new_tokens"],
                     show_default=True, help="Tokens generated per request (time estimates)."),
        click.option("--batch", type=click.IntRange(1, 100_000), default=1, show_default=True, help="Sequences decoded together."),
        click.option("--requests", type=click.IntRange(1, 10_000_000), default=1, show_default=True,
                     help="Sequences the job will generate (for --time auto in render-sbatch)."),
        click.option("--attn", "attn_implementation", type=click.Choice(["sdpa", "eager"]), default="sdpa", show_default=True,
                     help="Attention implementation transformers will run (gpt-oss always runs eager)."),
        click.option("--gpu", "gpu_type", default=None, help="GPU type from the catalog (e.g. H100-80GB) instead of a profile."),
        click.option("--gpus-per-node", type=click.IntRange(0, 16), default=None, help="GPUs per node with --gpu (0: CPU only)."),
        click.option("--node-mem", default=None, help="Host RAM per node with --gpu/--gpus-per-node, e.g. 256GB."),
        click.option("--cpus-per-node", type=click.IntRange(1, 1024), default=None, help="CPUs per node with --gpu."),
        click.option("--cluster", "cluster_file", type=click.Path(dir_okay=False), default=None,
                     help="Cluster profile TOML (see README); default: 2 x A100 40 GB, 4 CPUs, 128 GB."),
        click.option("--partition", default=None, help="Partition of the cluster profile."),
        click.option("--precision", default=None, help="Force a precision: bf16, fp16, fp8, mxfp4, int8, nf4, ..."),
        click.option("--max-gpus", type=click.IntRange(0, 16), default=None, help="Use at most this many GPUs."),
        click.option("--no-offload", is_flag=True, help="Only plans that keep everything on GPUs."),
        click.option("--no-disk", is_flag=True, help="Never offload to disk."),
        click.option("--min-tokens-per-s", type=click.FloatRange(0, None), default=1.0, show_default=True,
                     help="Slower offload plans count as does-not-fit."),
        click.option("--revision", default=None, help="Hub revision (branch, tag or commit) to plan for."),
        click.option("--offline", is_flag=True, help="Do not contact the Hub: cache, then the bundled catalog."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _options_from(kw: dict):
    from vplan.planner.plan.contract import Workload
    from vplan.planner.search.core import SearchOptions

    prompt = kw.get("prompt_tokens") or kw["context_tokens"]
    if prompt > kw["context_tokens"]:
        raise UsageError(f"--prompt-tokens {prompt} exceeds --context {kw['context_tokens']}: the context holds the prompt")
    wl = Workload(context_tokens=kw["context_tokens"], prompt_tokens=prompt, max_new_tokens=kw["max_new_tokens"],
                  batch=kw["batch"], attn_implementation=kw["attn_implementation"], requests=kw["requests"])
    return SearchOptions(workload=wl, precision=kw.get("precision"), max_gpus=kw.get("max_gpus"),
                         no_offload=kw.get("no_offload", False), allow_disk=not kw.get("no_disk", False),
                         min_tokens_per_s=kw.get("min_tokens_per_s", 1.0), partition=kw.get("partition"))


def _profile_from(kw: dict):
    from vplan.planner.hardware.cluster import default_profile, load_profile, profile_for_gpu

    gpu, n, mem, cpus = kw.get("gpu_type"), kw.get("gpus_per_node"), kw.get("node_mem"), kw.get("cpus_per_node")
    if kw.get("cluster_file"):
        if gpu or n is not None:
            raise UsageError("--cluster and --gpu/--gpus-per-node are exclusive: describe the node in one place")
        return load_profile(kw["cluster_file"])
    if gpu or n is not None or mem:
        if n is None:
            n = 1 if gpu else 0
        if n > 0 and not gpu:
            raise UsageError("--gpus-per-node N needs --gpu TYPE (e.g. --gpu A100-40GB); `vplan gpus` lists the types")
        if gpu is None and n == 0:
            return profile_for_gpu("A100-40GB", 0, node_mem=mem or "128GB", cpus_per_node=cpus)
        return profile_for_gpu(gpu or "A100-40GB", n, node_mem=mem, cpus_per_node=cpus)
    return default_profile()


def _check(models, kw):
    from vplan.planner.model.spec import build_spec
    from vplan.planner.search.core import search
    from vplan.planner.source.resolve import resolve_model

    profile = _profile_from(kw)
    opts = _options_from(kw)
    results = []
    for ref in models:
        src = resolve_model(ref, revision=kw.get("revision"), offline=True if kw.get("offline") else None)
        spec = build_spec(src.model_id, src.revision, src.source, src.config, src.checkpoint, notes=src.notes)
        results.append(search(spec, profile, opts))
    return profile, opts, results


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option("0.1.0", prog_name="vplan")
def cli():
    """Plan, preflight and run large language models on SLURM GPU clusters."""


@cli.command("check")
@click.argument("models", nargs=-1, required=True)
@_workload_options
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable result (contract) instead of tables.")
@click.option("--explain", is_flag=True, help="Show each GPU's memory as a bar: weights / KV / activations / overhead / free.")
@click.option("--hardware", is_flag=True, help="Show the model across the GPU catalog (1/2/4/8 GPUs per node).")
def check_cmd(models, as_json, explain, hardware, **kw):
    """Which setups run MODELS, at which precision, with what offload, how fast, and why not."""
    from vplan.planner.cli import display as render

    profile, opts, results = _check(models, kw)
    if as_json:
        click.echo(json.dumps(render.check_json(results, profile, opts), indent=2))
        return
    render.print_check(results, profile, opts, explain=explain)
    if hardware:
        from vplan.planner.search.matrix import hardware_matrix

        for res in results:
            render.print_matrix(res.spec, hardware_matrix(res.spec, opts))


@cli.command("plan")
@click.argument("model")
@_workload_options
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True, help="Plan file to write (JSON).")
@click.option("--force", is_flag=True, help="Overwrite an existing plan file.")
def plan_cmd(model, output, force, **kw):
    """Write the plan file for MODEL: the contract the runtime and render-sbatch follow."""
    from vplan.planner.cli import display as render
    from vplan.planner.plan.contract import write_plan

    profile, opts, results = _check([model], kw)
    res = results[0]
    path = write_plan(res.plan, output, force=force)
    render.print_check(results, profile, opts, explain=False)
    status = res.plan.status
    click.echo(f"wrote {path} (status {status})", err=True)
    if status == "does-not-fit":
        sys.exit(3)


@cli.command("gpus")
def gpus_cmd():
    """List the built-in GPU catalog."""
    from vplan.planner.cli import display as render

    render.print_gpus()


def _register_optional():
    """Commands from other modules; each imports its heavy dependencies only when it runs."""
    try:
        from vplan.planner.cli.slurm import cluster_group, render_sbatch_cmd

        cli.add_command(render_sbatch_cmd, "render-sbatch")
        cli.add_command(cluster_group, "cluster")
    except ImportError:
        pass
    try:
        from vplan.runtime.cli import preflight_cmd, run_cmd

        cli.add_command(preflight_cmd, "preflight")
        cli.add_command(run_cmd, "run")
    except ImportError:
        pass
    try:
        from vplan.runtime.cli_simulate import simulate_cmd

        cli.add_command(simulate_cmd, "simulate")
    except ImportError:
        pass


_register_optional()


def main(argv=None):
    debug = os.environ.get("VPLAN_DEBUG") == "1"
    try:
        cli.main(args=argv, prog_name="vplan", standalone_mode=False)
    except VplanError as e:
        if debug:
            raise
        click.echo(f"vplan: error: {e.message}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("vplan: aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("vplan: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug, not a user error: one line unless debugging
        if debug:
            raise
        click.echo(f"vplan: internal error: {type(e).__name__}: {e} (set VPLAN_DEBUG=1 for the traceback and report it)", err=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
