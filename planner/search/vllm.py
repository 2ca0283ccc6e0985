"""Plan search for the vLLM engine: precision x (tensor parallel, pipeline parallel, nodes), each rank budgeted as
vLLM 0.32 allocates it (planner/memory/vllm*.py), the best chosen, the rest kept as alternatives with reasons.

Shapes: tensor parallelism inside a node (a TP size vLLM accepts for the model, dividing the GPUs of a node), and
pipeline stages inside a node or one stage group per node across nodes (vLLM's mp backend puts TP innermost, so
``--nnodes N`` with TP = GPUs per node gives one stage per node). TP across nodes is not planned (all-reduces over
the network every layer). Default goal: the highest precision vLLM can hold the model in (as stored, then online
fp8, then online MXFP4) with the fewest GPUs whose KV pool holds max_model_len (the workload's context) at a
concurrency of at least --batch; among shapes of that GPU count, the fastest for the job.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.memory import vllm as vm
from vplan.planner.memory import vllm_gpu as vg
from vplan.planner.memory.overhead import HOST_PROCESS_BYTES
from vplan.planner.model import ModelSpec
from vplan.planner.plan.contract import DeviceBudget, Plan, Rejection, Requirement, Speed, VllmArgs, VllmRank
from vplan.planner.search import precision as policy
from vplan.planner.search import vllm_speed
from vplan.planner.search.core import CheckResult
from vplan.planner.search.transformers import cluster_shape
from vplan.planner.units import GIB

MAX_NODES_SEARCHED = 64  # how far the search looks for "would need N nodes" when the partition is too small
HOST_PROCESSES_EXTRA = 1  # the engine core (node 0 also runs the API server) beside one process per GPU


@dataclass(frozen=True)
class Shape:
    tp: int
    pp: int
    nodes: int
    gpus_per_node: int  # GPUs used on each node

    @property
    def world(self) -> int:
        return self.tp * self.pp

    def label(self, gpu_name: str) -> str:
        where = f"{self.nodes} nodes x {self.gpus_per_node}" if self.nodes > 1 else f"{self.gpus_per_node}"
        return f"{where} x {gpu_name} (TP {self.tp} x PP {self.pp})"


def shapes(spec: ModelSpec, gpus_per_node: int, max_nodes: int) -> list[Shape]:
    """Every shape vLLM can build, fewest GPUs first (LayoutError for a family vplan has no vLLM layout of)."""
    vm.lay.family(spec.config)
    layers = spec.config["num_hidden_layers"]
    tps = [t for t in vm.accepted_tp_sizes(spec, gpus_per_node) if gpus_per_node % t == 0 or t == gpus_per_node]
    out = []
    for g in range(1, gpus_per_node + 1):
        out += [Shape(t, g // t, 1, g) for t in tps if g % t == 0 and g // t <= layers]
    for n in range(2, max_nodes + 1):  # beyond a few nodes only TP = the node's GPUs (one stage per node)
        out += [Shape(t, n * gpus_per_node // t, n, gpus_per_node) for t in tps
                if gpus_per_node % t == 0 and n * gpus_per_node // t <= layers and (n <= 8 or t == tps[-1])]
    return out


def _g(n: int) -> str:
    return f"{n / GIB:.1f}"


def build_candidate(spec: ModelSpec, profile: ClusterProfile, part: Partition, precision: str, shape: Shape,
                    opts) -> Plan:
    wl, gpu = opts.workload, part.gpu
    mlen = wl.context_tokens
    mnbt, mns = vg.batch_defaults(gpu, mlen)
    bs = vg.block_size(spec, gpu)
    kw = dict(marlin=policy.vllm_marlin(precision, gpu), mxfp4_backend="marlin" if gpu.compute_capability < (9, 0)
              else "triton")
    breakdown = [vm.rank_weight_breakdown(spec, tp=shape.tp, pp=shape.pp, pp_rank=s, precision=precision, **kw)
                 for s in range(shape.pp)]
    budgets = [vg.rank_budget(gpu, weights_bytes=sum(b.values()), world_size=shape.world,
                              profile_peak_bytes=vg.profile_peak_bytes(spec, tp=shape.tp, pp=shape.pp, pp_rank=s,
                                                                       max_num_batched_tokens=mnbt, max_num_seqs=mns))
               for s, b in enumerate(breakdown)]
    avail = [max(0, b.available_kv_bytes) for b in budgets]
    pool = vm.kv_pool(spec, tp=shape.tp, pp=shape.pp, pool_bytes_per_rank=avail, block_size=bs, max_model_len=mlen,
                      kv_dtype_bytes=2, max_num_batched_tokens=mnbt)
    held = max(0, pool.num_blocks - 1) // pool.blocks_per_request
    rejection, reason = _why_not(spec, precision, shape, gpu, budgets, pool, held, wl.batch, mlen)
    tokens_per_request = min(wl.prompt_tokens + wl.max_new_tokens, mlen)
    conc = max(1, min(wl.requests, mns, pool.concurrency_for(tokens_per_request) or 1))
    big = max(range(shape.pp), key=lambda s: sum(breakdown[s].values()))
    sp = vllm_speed.estimate(_speed_inputs(spec, profile, gpu, shape, breakdown[big], pool, big, conc, mnbt, precision,
                                           wl))
    ranks, devices = [], []
    for r in range(shape.world):
        node, local, stage = r // shape.gpus_per_node, r % shape.gpus_per_node, r // shape.tp
        b = budgets[stage]
        kv = pool.num_blocks * pool.bytes_per_block[stage]
        ranks.append(VllmRank(node=node, gpu=local, tp_rank=r % shape.tp, pp_rank=stage,
                              layers=tuple(vm.stage_layers(spec, pp=shape.pp, pp_rank=stage)),
                              weights_bytes=b.weights_bytes, profile_peak_bytes=b.profile_peak_bytes,
                              non_torch_bytes=b.outside_bytes + b.non_torch_bytes, cuda_graph_bytes=b.cuda_graph_bytes,
                              kv_cache_bytes=kv))
        devices.append(DeviceBudget(device=str(local), node=node, weights_bytes=b.weights_bytes, kv_cache_bytes=kv,
                                    activation_bytes=b.profile_peak_bytes, capacity_bytes=b.capacity_bytes,
                                    overhead_bytes=b.outside_bytes + b.non_torch_bytes + b.cuda_graph_bytes))
    per_token = sum(shape.tp * pool.bytes_per_block[s] for s in range(shape.pp)) // bs
    args = VllmArgs(version=vm.MODELLED_VERSION, tensor_parallel_size=shape.tp, pipeline_parallel_size=shape.pp,
                    quantization=policy.vllm_quantization(spec, precision), dtype=policy.dtype_for(precision, gpu),
                    kv_cache_dtype="auto", max_model_len=mlen, gpu_memory_utilization=vg.DEFAULT_GPU_MEMORY_UTILIZATION,
                    max_num_seqs=mns, max_num_batched_tokens=mnbt, block_size=bs, enforce_eager=False,
                    kv_cache_tokens=pool.tokens, max_concurrency=round(pool.max_concurrency, 2), ranks=tuple(ranks))
    return Plan(
        model_id=spec.model_id, revision=spec.revision, source=spec.source, architecture=spec.architecture,
        engine="vllm", status="fits" if rejection is None else "does-not-fit", rejection=rejection, reason=reason,
        precision=precision, dtype=args.dtype, quantization=None, gpu_type=gpu.name, gpus=shape.gpus_per_node,
        nodes=shape.nodes, device_map={}, devices=tuple(devices), offload_folder=None,
        host_ram_bytes=(shape.gpus_per_node + HOST_PROCESSES_EXTRA) * HOST_PROCESS_BYTES, disk_bytes=0,
        hub_cache_bytes=spec.checkpoint_bytes, checkpoint_bytes=spec.checkpoint_bytes, params_total=spec.params_total,
        params_active=spec.params_active, kv_bytes_per_token=per_token, kv_cache_bytes=sum(d.kv_cache_bytes for d in devices),
        workload=wl, speed=replace(sp, assumptions=sp.assumptions + vg.assumptions(shape.world)),
        cluster=cluster_shape(profile, part), config=spec.config,
        requirements={"vllm": Requirement(vm.VERSION_SPEC, f"the per-rank memory model was read from vLLM "
                                          f"{vm.MODELLED_VERSION} (0.33 checked)")},
        conditions=policy.vllm_conditions(spec, precision, gpu) + _multinode_conditions(shape),
        warnings=tuple(spec.warnings), vllm=args)


def _speed_inputs(spec, profile, gpu, shape, parts: dict, pool, stage, conc, mnbt, precision, wl):
    experts = parts.get("experts", 0)
    moe = spec.moe
    c = spec.config
    full_layers = sum(1 for i in vm.stage_layers(spec, pp=shape.pp, pp_rank=stage)
                      if vm.attention_windows(spec)[i] is None)
    per_layer = vm.kv_page_bytes(spec, tp=shape.tp, block_size=1, kv_dtype_bytes=2)
    return vllm_speed.VllmSpeedInputs(
        gpu=gpu, tp=shape.tp, pp=shape.pp, nodes=shape.nodes, stage_layers=len(vm.stage_layers(spec, pp=shape.pp,
                                                                                             pp_rank=stage)),
        stage_dense_bytes=sum(parts.values()) - experts, stage_expert_bytes=experts,
        experts=moe.n_routed_experts if moe else 0, top_k=moe.top_k if moe else 0,
        kv_bytes_per_token=full_layers * per_layer, hidden=c["hidden_size"], act_bytes=2,
        dense_flops_per_token=2.0 * spec.params_active,
        attn_flops_per_token_per_context=4.0 * spec.num_layers * spec.num_heads * spec.head_dim,
        prompt_tokens=wl.prompt_tokens, new_tokens=wl.max_new_tokens, concurrency=conc, max_num_batched_tokens=mnbt,
        checkpoint_bytes=spec.checkpoint_bytes, storage_bytes_per_s=profile.storage_bytes_per_s,
        weight_only=policy.vllm_marlin(precision, gpu) or precision == "mxfp4" or precision.startswith(("gptq", "awq")))


def _multinode_conditions(shape: Shape) -> tuple[str, ...]:
    if shape.nodes == 1:
        return ()
    return (f"{shape.nodes} nodes in one job: vLLM's mp backend (--nnodes {shape.nodes}, one task per node, "
            "followers --headless); the nodes must reach each other over TCP (set the network interface in the "
            "cluster profile when nodes have several)",)


def _why_not(spec, precision, shape, gpu, budgets, pool, held, batch, mlen) -> tuple[str | None, str]:
    where = shape.label(gpu.name)
    b = max(budgets, key=lambda x: x.weights_bytes + x.profile_peak_bytes)
    if not all(x.starts for x in budgets):
        return Rejection.GPU_MEMORY, (f"{precision} on {where}: the CUDA context and NCCL ({_g(b.outside_bytes)} GiB) do "
                                      f"not fit in the {_g(b.capacity_bytes - b.requested_bytes)} GiB vLLM leaves "
                                      "outside gpu_memory_utilization")
    if b.available_kv_bytes <= 0:
        return Rejection.GPU_MEMORY, (
            f"{precision} on {where}: a rank needs weights {_g(b.weights_bytes)} + profiling peak "
            f"{_g(b.profile_peak_bytes)} + non-torch and CUDA graphs {_g(b.non_torch_bytes + b.cuda_graph_bytes)} GiB, "
            f"more than the {_g(b.requested_bytes)} GiB vLLM may use (0.92 of {_g(b.capacity_bytes)} GiB)")
    limit = spec.config.get("max_position_embeddings")
    if limit and mlen > limit:
        return Rejection.CONTEXT, (f"max_model_len {mlen} exceeds the model's max_position_embeddings {limit}: vLLM "
                                   "refuses it (config/model.py); lower --context")
    if pool.error:
        return Rejection.CONTEXT, f"{precision} on {where}: vLLM would stop with: {pool.error.split(' Try ')[0]}"
    if held < batch:
        return Rejection.CONTEXT, (f"{precision} on {where}: the KV pool ({pool.tokens:,} tokens) holds {held} "
                                   f"request(s) of {mlen} tokens at once, fewer than --batch {batch}")
    return None, ""


def search_vllm(spec: ModelSpec, profile: ClusterProfile, opts) -> CheckResult:
    part = profile.partition(opts.partition)
    gpu = part.gpu if part.gpus_per_node > 0 else None
    lad = policy.vllm_ladder(spec, gpu, forced=opts.precision) if gpu else None
    if gpu is None or not lad.tried:
        why = "the partition has no GPU" if gpu is None else "; ".join(c.why_not for c in lad.refused[:1])
        return CheckResult(spec, _refused(spec, profile, part, opts, why), (), lad.refused if lad else (), (), part)
    try:
        gpn = part.gpus_per_node if opts.max_gpus is None else min(opts.max_gpus, part.gpus_per_node)
        all_shapes = shapes(spec, gpn, MAX_NODES_SEARCHED)
    except vm.LayoutError as e:
        return CheckResult(spec, _refused(spec, profile, part, opts, str(e)), (), lad.refused, (), part)
    if not all_shapes:
        return CheckResult(spec, _refused(spec, profile, part, opts, f"no tensor-parallel size up to {gpn} divides "
                                          "the model's heads"), (), lad.refused, (), part)
    best: dict[str, Plan] = {}  # precision -> fewest-GPU fitting plan (fastest among equals)
    closest: dict[str, Plan] = {}  # precision -> its widest rejected try within the partition
    limit, settled = part.nodes * gpn, False
    for prec in lad.tried:
        for count in sorted({s.world for s in all_shapes}):
            if count > limit and (settled or any(c.gpus * c.nodes < count for c in best.values())):
                break  # a better precision runs here, or runs on fewer GPUs beyond the partition
            group = [build_candidate(spec, profile, part, prec, s, opts) for s in all_shapes if s.world == count]
            fitting = [c for c in group if c.status == "fits"]
            if fitting:
                best[prec] = min(fitting, key=lambda c: c.speed.seconds_per_request)
                settled = settled or (count <= limit and not _last_resort(prec, spec))
                break
            if count <= limit:
                closest[prec] = min(group, key=lambda c: c.speed.seconds_per_request)
    within = [c for c in best.values() if c.nodes <= part.nodes]
    if within:
        chosen = _reason(min(within, key=lambda c: _preference(c, spec, lad.tried)), lad.tried, spec)
    elif best:
        need = min(best.values(), key=lambda c: _preference(c, spec, lad.tried))
        v = need.vllm
        chosen = replace(need, status="does-not-fit", rejection=Rejection.NODES, reason=(
            f"{need.precision} needs {need.nodes} nodes (TP {v.tensor_parallel_size} x PP {v.pipeline_parallel_size}); "
            f"partition {part.name!r} has {part.nodes}"))
    else:
        chosen = closest[lad.tried[0]]
    alts = [c for c in best.values() if c.vllm != chosen.vllm]
    alts += [c for p, c in closest.items() if p not in best and c.vllm != chosen.vllm]
    return CheckResult(spec, chosen, tuple(alts), lad.refused, (), part)


def _last_resort(precision: str, spec: ModelSpec) -> bool:
    """Online MXFP4 (4-bit, no calibration) is chosen only when nothing better runs in the partition."""
    return precision == "mxfp4" and policy.checkpoint_method(spec) is None


def _preference(plan: Plan, spec: ModelSpec, ladder: tuple[str, ...]) -> tuple:
    """One node before several (pipeline stages across nodes only when one node is too small), then the
    precision, then the fewest GPUs, then the fastest job; online MXFP4 last."""
    return (_last_resort(plan.precision, spec), plan.nodes > 1, ladder.index(plan.precision), plan.gpus * plan.nodes,
            plan.speed.seconds_per_request)


def _reason(plan: Plan, ladder: tuple[str, ...], spec: ModelSpec) -> Plan:
    v = plan.vllm
    where = Shape(v.tensor_parallel_size, v.pipeline_parallel_size, plan.nodes, plan.gpus).label(plan.gpu_type)
    better = ladder[:ladder.index(plan.precision)]
    why = f"{plan.precision} is the highest precision vLLM holds the model in on "
    why += "one node" if plan.nodes == 1 else "the fewest nodes (one node is too small)"
    if better:
        why += f" ({', '.join(better)} would need {'more nodes' if plan.nodes == 1 else 'more nodes than that'}: "
        why += "see the alternatives)"
    return replace(plan, reason=why + f"; the fewest GPUs whose KV pool holds {v.max_model_len} tokens for at least "
                   f"{plan.workload.batch} request(s) at once: {where}")


def _refused(spec, profile, part, opts, why: str) -> Plan:
    """A does-not-fit vLLM plan for a model or partition vLLM (as vplan models it) cannot run."""
    gpu = part.gpu
    return Plan(model_id=spec.model_id, revision=spec.revision, source=spec.source, architecture=spec.architecture,
                engine="vllm", status="does-not-fit", rejection=Rejection.ENGINE, reason=f"vLLM: {why}",
                precision=policy.compute_precision(gpu), dtype=policy.dtype_for(policy.compute_precision(gpu), gpu),
                quantization=None, gpu_type=gpu.name if gpu else None, gpus=0, nodes=1, device_map={}, devices=(),
                offload_folder=None, host_ram_bytes=0, disk_bytes=0, hub_cache_bytes=spec.checkpoint_bytes,
                checkpoint_bytes=spec.checkpoint_bytes, params_total=spec.params_total,
                params_active=spec.params_active, kv_bytes_per_token=0, kv_cache_bytes=0, workload=opts.workload,
                speed=Speed(0.0, 0.0, 0.0, 0.0, 0.0, ()), cluster=cluster_shape(profile, part), config=spec.config,
                warnings=tuple(spec.warnings))
