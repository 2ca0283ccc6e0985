"""`vplan simulate PLAN`: the exact tensor-memory peak of the planned run, simulated on CPU.

Imports torch only when the command runs (the CLI registers this module at start-up).
"""
from __future__ import annotations

import json

import click

from vplan.planner.errors import PlanFileError


def predicted_peak_bytes(plan) -> dict:
    """The planner's own prediction of the tensor peak (what the simulator measures): weights + KV +
    activations per GPU, without CUDA context, workspaces or allocator reserve."""
    per = {d.device: d.weights_bytes + d.kv_cache_bytes + d.activation_bytes
           for d in plan.devices if d.device.isdigit() or plan.gpus == 0}
    return {"peak_bytes": max(per.values(), default=0), "per_device": per}


@click.command("simulate")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable result (contract).")
def simulate_cmd(plan_file, as_json):
    """Simulate the planned generate() with fake CUDA tensors and report its exact tensor peak."""
    from vplan.planner.plan.contract import read_plan

    plan = read_plan(plan_file)
    if not plan.config:
        raise PlanFileError(f"{plan_file} has no model config; re-create it with `vplan plan`")
    from .simulate import simulate_plan

    res = simulate_plan(plan.to_dict())
    pred = predicted_peak_bytes(plan)
    out = res.to_dict()
    out["predicted_peak_bytes"] = pred["peak_bytes"]
    out["predicted_per_device_bytes"] = pred["per_device"]
    out["error_pct"] = round(100.0 * (pred["peak_bytes"] - res.peak_bytes) / res.peak_bytes, 3) if res.peak_bytes else None
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    gib = 1024**3
    click.echo(f"{plan.model_id}: simulated tensor peak {res.peak_bytes / gib:.3f} GiB "
               f"({res.peak_bytes:,} bytes), planner predicted {pred['peak_bytes'] / gib:.3f} GiB "
               f"({out['error_pct']:+.2f} %)")
    for dev, b in sorted(out.get("gpu_peak_bytes", {}).items()):
        click.echo(f"  device {dev}: {b / gib:.3f} GiB")
    for k, v in out.get("breakdown", {}).items():
        click.echo(f"  {k}: {v / gib:.3f} GiB")
    where = out.get("where") or {}
    if where:
        click.echo("  where: " + ", ".join(f"{k}={v}" for k, v in where.items()))
