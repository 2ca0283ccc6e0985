"""`vplan simulate PLAN`: the exact tensor-memory peak of the planned run, simulated on CPU.

Registered through the vplan.commands entry point; imports torch only when the command runs. Planned figures are
the plan's per-device tensor bytes (weights + KV + activations, the overheads the simulator cannot see left out).
"""
from __future__ import annotations

import json

import click

from vplan.planner.errors import PlanFileError
from vplan.planner.units import GIB as gib


@click.command("simulate")
@click.argument("plan_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the machine-readable result (contract).")
def simulate_cmd(plan_file, as_json):
    """Simulate the planned generate() with fake CUDA tensors and report its exact tensor peak."""
    from vplan.planner.plan import read_plan

    plan = read_plan(plan_file)
    if not plan.config:
        raise PlanFileError(f"{plan_file} has no model config; re-create it with `vplan plan`")
    from vplan.runtime.sim.simulate import simulate_plan

    res = simulate_plan(plan)
    per = {d.device: d.tensor_bytes for d in plan.devices if d.is_gpu or plan.gpus == 0}
    pred = {"peak_bytes": max(per.values(), default=0), "per_device": per}
    out = res.to_dict()
    out["predicted_peak_bytes"] = pred["peak_bytes"]
    out["predicted_per_device_bytes"] = pred["per_device"]
    out["error_pct"] = round(100.0 * (pred["peak_bytes"] - res.peak_bytes) / res.peak_bytes, 3) if res.peak_bytes else None
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
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
