"""Hand-built Plans for tests that need a plan without running the planner (renderer, runtime on tiny models).

``plan(**fields)`` fills every contract field with a coherent default; tests override what they exercise.
Plans built here still pass the strict schema (tests/planner/test_plan_contract.py checks it).
"""
from __future__ import annotations

from vplan.planner.plan.contract import ClusterShape, DeviceBudget, Plan, Rejection, Speed, VllmArgs, VllmRank, Workload

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


def vllm_args(*, tp: int = 2, pp: int = 1, nodes: int = 1, gpus_per_node: int | None = None, weights_bytes: int = 8 * GIB,
              kv_bytes: int = 20 * GIB, layers: int = 32, **fields) -> VllmArgs:
    """vLLM arguments with one rank per GPU, node by node (TP innermost, then PP, as vLLM places them)."""
    gpus_per_node = gpus_per_node or (tp * pp) // nodes
    ranks = []
    for rank in range(tp * pp):
        stage = rank // tp
        per_stage = layers // pp
        ranks.append(VllmRank(node=rank // gpus_per_node, gpu=rank % gpus_per_node, tp_rank=rank % tp, pp_rank=stage,
                              layers=tuple(range(stage * per_stage, (stage + 1) * per_stage)), weights_bytes=weights_bytes,
                              profile_peak_bytes=GIB, non_torch_bytes=GIB // 2, cuda_graph_bytes=GIB // 4,
                              kv_cache_bytes=kv_bytes))
    defaults = dict(version="0.32.0", tensor_parallel_size=tp, pipeline_parallel_size=pp, quantization=None,
                    dtype="bfloat16", kv_cache_dtype="auto", max_model_len=8192, gpu_memory_utilization=0.9,
                    max_num_seqs=256, max_num_batched_tokens=2048, block_size=16, enforce_eager=False,
                    kv_cache_tokens=163_840, max_concurrency=20.0, port=8000, ranks=tuple(ranks))
    defaults.update(fields)
    return VllmArgs(**defaults)


def vllm_plan(*, tp: int = 2, pp: int = 1, nodes: int = 1, args: VllmArgs | None = None, **fields) -> Plan:
    """A fitting vLLM plan on A100-40GB nodes: ``tp * pp`` GPUs spread over ``nodes``."""
    args = args or vllm_args(tp=tp, pp=pp, nodes=nodes)
    gpus = (args.tensor_parallel_size * args.pipeline_parallel_size) // nodes
    devices = tuple(DeviceBudget(str(r.gpu), weights_bytes=r.weights_bytes, kv_cache_bytes=r.kv_cache_bytes,
                                 activation_bytes=r.profile_peak_bytes, overhead_bytes=r.non_torch_bytes + r.cuda_graph_bytes,
                                 capacity_bytes=int(39.5 * GIB), node=r.node) for r in args.ranks)
    wl = fields.pop("workload", None) or Workload(batch=16, requests=1000, prompt_tokens=3000, max_new_tokens=500,
                                                  context_tokens=3500)
    defaults = dict(engine="vllm", model_id="meta-llama/Llama-3.1-8B-Instruct", revision="0e9e39f249a16976918f6564b8830bc894c89659",
                    architecture="llama", gpu_type="A100-40GB", gpus=gpus, nodes=nodes, devices=devices,
                    host_ram_bytes=24 * GIB, vllm=args, workload=wl,
                    speed=Speed(decode_tokens_per_s=40.0, prefill_tokens_per_s=8000.0, load_seconds=60.0,
                                throughput_tokens_per_s=600.0, seconds_per_request=0.9, assumptions=("test plan",)))
    defaults.update(fields)
    return plan(**defaults)
