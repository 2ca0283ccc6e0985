"""`vplan preflight` and `vplan run`: parse, call the runtime, render. Registered by planner/cli.py's group.

Exit codes: preflight failures 4 (PreflightError), load/run failures 5 (RunError), user errors 2.
Nothing here imports torch at import time (`vplan check` must stay fast).
"""
from __future__ import annotations

import json
import sys

import click

from vplan.planner.errors import PreflightError, UsageError


def _render_checks(report, *, tty: bool) -> None:
    if not tty:
        for c in report.checks:
            click.echo(c.line())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"preflight {report.model_id}" + (" (dry run)" if report.dry_run else ""))
    for col in ("check", "verdict", "detail", "fix"):
        table.add_column(col)
    style = {"ok": "green", "FAIL": "bold red", "skip": "yellow"}
    for c in report.checks:
        table.add_row(c.name, f"[{style[c.verdict]}]{c.verdict}[/]", c.detail, c.fix if not c.ok else "")
    Console().print(table)


@click.command("preflight")
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option("--dry-run", is_flag=True, help="Only the checks that need no GPU (CI, login nodes); GPU checks are described.")
@click.option("--model-path", type=click.Path(file_okay=False), default=None, help="Local folder with the checkpoint instead of the Hub id.")
def preflight_cmd(plan_file, as_json, dry_run, model_path):
    """Check this node against PLAN (GPUs, free memory, job RAM limit, disk, files, packages) without loading."""
    from vplan.planner.plan import read_plan

    from vplan.runtime.preflight import run_preflight

    report = run_preflight(read_plan(plan_file), model_path=model_path, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _render_checks(report, tty=sys.stdout.isatty())
    report.raise_for_failures(shown=True)
    if not as_json:
        click.echo(f"preflight passed{' (dry run: GPU checks not run)' if dry_run else ''}: {plan_file} can run here", err=True)


@click.command("run")
@click.argument("plan_file", metavar="PLAN", type=click.Path(dir_okay=False))
@click.option("--prompt", default=None, help="One prompt; the output goes to stdout.")
@click.option("--input", "input_path", type=click.Path(dir_okay=False), default=None,
              help='JSONL of {"id", "prompt"} or {"id", "messages"} records.')
@click.option("--output", "output_path", type=click.Path(dir_okay=False), default=None,
              help="JSONL to append results to (one flushed line per record); rerunning resumes.")
@click.option("--max-new-tokens", type=click.IntRange(1, 10_000_000), default=None, help="Default: the plan's workload.")
@click.option("--do-sample", is_flag=True, help="Sample instead of greedy decoding (greedy is deterministic).")
@click.option("--temperature", type=click.FloatRange(0, None, min_open=True), default=None, help="Sampling temperature (with --do-sample).")
@click.option("--model-path", type=click.Path(file_okay=False), default=None,
              help="Load from this local folder instead of the Hub id (the plan pins everything else).")
@click.option("--no-chat-template", is_flag=True, help="Feed prompts as raw text even when the tokenizer has a chat template.")
@click.option("--skip-preflight", is_flag=True, help="Load without checking the node first.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="Write the load and run measurements (measured vs planned) as JSON.")
@click.option("--endpoint", default=None,
              help="vLLM plans: the running server's OpenAI base URL (the job's $VPLAN_ENDPOINT) [default: start `vllm serve` here].")
@click.option("--concurrency", type=click.IntRange(1, 100_000), default=None,
              help="vLLM plans: requests in flight at once [default: the plan's batch, at most --max-num-seqs].")
@click.option("--engine-log", type=click.Path(dir_okay=False), default=None,
              help="vLLM plans: the server's log, for the figures only it reports (the job's $VPLAN_VLLM_LOG).")
def run_cmd(plan_file, prompt, input_path, output_path, max_new_tokens, do_sample, temperature, model_path,
            no_chat_template, skip_preflight, report_path, endpoint, concurrency, engine_log):
    """Preflight, load PLAN exactly as planned, generate for --prompt or --input, report measured vs planned.

    A vLLM plan runs through vLLM's server: the job's (--endpoint), or one this command starts and stops.
    """
    if (prompt is None) == (input_path is None):
        raise UsageError("give exactly one of --prompt TEXT or --input prompts.jsonl")
    if input_path and not output_path:
        raise UsageError("--input needs --output out.jsonl (results are appended there, and reruns resume from it)")
    if temperature is not None and not do_sample:
        raise UsageError("--temperature only applies with --do-sample (decoding is greedy otherwise)")
    from vplan.planner.plan import read_plan

    from vplan.runtime.records import read_records

    plan = read_plan(plan_file)
    records = read_records(input_path) if input_path else [{"id": 0, "prompt": prompt}]
    if plan.status == "does-not-fit":
        raise PreflightError(f"{plan_file} has status does-not-fit ({plan.reason or 'no reason given'}); pick a plan that fits: `vplan check MODEL`")

    def show(rec):
        if prompt is not None:
            click.echo(rec["output"])

    args = dict(output=output_path, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature,
                chat_template=not no_chat_template, model_path=model_path, on_record=show)
    if plan.engine == "vllm":
        result = _run_vllm(plan, records, args, endpoint=endpoint, concurrency=concurrency, engine_log=engine_log,
                           skip_preflight=skip_preflight)
    else:
        if endpoint or concurrency or engine_log:
            raise UsageError("--endpoint, --concurrency and --engine-log are for vLLM plans; this plan's engine is transformers")
        result = _run_transformers(plan, records, args, skip_preflight=skip_preflight)
    if report_path:
        from pathlib import Path

        Path(report_path).write_text(json.dumps({"plan": str(plan_file), **result}, indent=2, default=str) + "\n")


def _preflight(plan, model_path) -> None:
    from vplan.runtime.preflight import run_preflight
    from vplan.runtime.report import stderr_log

    pre = run_preflight(plan, model_path=model_path)
    for c in pre.failures:
        stderr_log(c.line())
    pre.raise_for_failures(shown=True)
    stderr_log(f"[*] Preflight passed ({len(pre.checks)} checks)")


def _run_transformers(plan, records, args, *, skip_preflight) -> dict:
    from vplan.runtime.report import render_measures
    from vplan.runtime.transformers.generate import run_records
    from vplan.runtime.transformers.load import load_planned

    if not skip_preflight:
        _preflight(plan, args["model_path"])
    model, tokenizer, load_report = load_planned(plan, model_path=args.pop("model_path"))
    run_report = run_records(model, tokenizer, records, plan, **args)
    render_measures(run_report.peak, "Peak memory, measured vs planned")
    return {"load": load_report.to_dict(), "run": run_report.to_dict()}


def _run_vllm(plan, records, args, *, endpoint, concurrency, engine_log, skip_preflight) -> dict:
    from vplan.runtime.vllm.run import run_vllm

    if not skip_preflight and not endpoint:
        _preflight(plan, args["model_path"])
    return run_vllm(plan, records, endpoint=endpoint, concurrency=concurrency, engine_log=engine_log,
                    server_preflight=not skip_preflight, **args).to_dict()
