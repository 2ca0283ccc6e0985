"""Hand-built Plans for tests that need a plan without running the planner (renderer, runtime on tiny models).

``plan(**fields)`` fills every contract field with a coherent default; tests override what they exercise.
Plans built here still pass the strict schema (tests/planner/test_plan_contract.py checks it).
"""
from __future__ import annotations

from vplan.planner.plan.contract import ClusterShape, Plan, Rejection, Speed, Workload

GIB = 1024**3


def speed(decode: float = 30.0, prefill: float = 2000.0, load_s: float = 20.0, workload: Workload | None = None) -> Speed:
    wl = workload or Workload()
    per_request = wl.prompt_tokens / prefill + wl.max_new_tokens / decode
    return Speed(decode_tokens_per_s=decode, prefill_tokens_per_s=prefill, load_seconds=load_s,
                 throughput_tokens_per_s=decode * wl.batch, seconds_per_request=per_request / wl.batch,
                 assumptions=("test plan",))


def plan(**fields) -> Plan:
    status = fields.get("status", "fits")
    wl = fields.get("workload") or Workload()
    defaults = dict(
        model_id="Qwen/Qwen3-8B", revision=None, source="hub", architecture="llama", engine="transformers",
        status=status, rejection=Rejection.GPU_MEMORY if status == "does-not-fit" else None,
        reason="test plan", precision="bf16", dtype="bfloat16", quantization=None, gpu_type=None, gpus=0, nodes=1,
        device_map={}, devices=(), offload_folder=None, host_ram_bytes=2 * GIB, disk_bytes=0, hub_cache_bytes=0,
        checkpoint_bytes=0, params_total=0, params_active=0, kv_bytes_per_token=0, kv_cache_bytes=0, workload=wl,
        speed=speed(workload=wl),
        cluster=ClusterShape(profile="test", partition="gpu", gpu=fields.get("gpu_type"), gpus_per_node=2,
                             cpus_per_node=4, mem_bytes=128 * 1000**3),
        config={}, vplan_version="0.1.0", created_at="2026-01-01T00:00:00+00:00",
    )
    defaults.update(fields)
    return Plan(**defaults)
