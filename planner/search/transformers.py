"""The transformers engine: one candidate = precision x GPU count x offload mode -> device map, budgets, speed.

Per GPU: weights + KV of the blocks placed there + activation peak + overhead (CUDA context, workspaces,
allocator fragmentation margin). GPU 0 also holds the KV of offloaded layers and, while an offloaded block
runs, that block's weights (accelerate executes cpu/disk blocks on the main device). Host RAM: CPU-offloaded
weights (fp32 under bitsandbytes' CPU offload), the loading peak and the process. Disk: offloaded weights
written to the offload folder (or read in place from safetensors shards).
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.memory import activations, host as hostmod, kv, overhead, weights
from vplan.planner.model import ModelSpec
from vplan.planner.model.behaviours import behaviour, version_of_requirement, version_text
from vplan.planner.plan.contract import ClusterShape, DeviceBudget, Plan, Rejection, Requirement
from vplan.planner.search import precision as policy
from vplan.planner.search.placement import Placement, PlacementItem, place
from vplan.planner.search.speed import SpeedInputs, estimate_speed, prefill_flops
from vplan.planner.units import GIB

OFFLOAD_MODES = ("none", "cpu", "disk")
def compute_bytes(precision: str) -> int:
    """Bytes per element of the compute dtype, which the KV cache and the activations are held in: fp32 plans
    compute in fp32, every other precision (quantized ones included) in bf16/fp16."""
    return 4 if precision == "fp32" else 2
# precisions whose nn.Linear layers run a quantized kernel (a host cost per call; see speed.CALL_HOST_S)
QUANTIZED_LINEARS = ("int8", "int8-nodecomp", "nf4", "fp8", "bnb-int8", "bnb-nf4", "gptq-int4", "gptq-int8", "awq-int4")


@dataclass(frozen=True)
class Tables:
    """Byte tables of one (model, precision, workload): the inputs of placement and budgets."""

    w_gpu: dict[str, int]  # weights per block as held on a GPU
    w_cpu: dict[str, int]  # ... as held in host RAM (bitsandbytes' CPU offload keeps fp32)
    kv: dict[str, int]  # KV cache per block
    act: int  # activation peak
    writes_offload_folder: bool


def tables(spec: ModelSpec, precision: str, wl) -> Tables:
    mem = policy.memory_precision(precision)
    return Tables(
        w_gpu=weights.weight_bytes_by_block(spec, mem),
        w_cpu=weights.weight_bytes_by_block(spec, mem, cpu_offload_fp32=precision in policy.BNB_ALL),
        kv=kv.kv_cache_bytes_by_block(spec, wl.context_tokens, wl.batch, compute_bytes(precision),
                                      prompt_tokens=wl.prompt_tokens),
        act=activations.activation_peak_bytes(spec, batch=wl.batch, prompt_tokens=wl.prompt_tokens,
                                              attn_implementation=wl.attn_implementation,
                                              dtype_bytes=compute_bytes(precision)).peak_bytes,
        writes_offload_folder=hostmod.needs_offload_folder(spec, precision),
    )


def _items(spec: ModelSpec, t: Tables, n_gpus: int) -> list[PlacementItem]:
    tied_head = spec.tie_word_embeddings and spec.embed_block in t.w_gpu
    return [PlacementItem(
        name=b.name,
        gpu_bytes=t.w_gpu[b.name] + t.kv.get(b.name, 0),
        cpu_bytes=t.w_cpu[b.name] + (t.kv.get(b.name, 0) if n_gpus == 0 else 0),
        disk_bytes=t.w_cpu[b.name] if t.writes_offload_folder else 0,
        kv_bytes=t.kv.get(b.name, 0),
        follows=spec.embed_block if (tied_head and b.name == "lm_head") else None,
    ) for b in spec.blocks]


def _place(items, gpu_budget: int, n_gpus: int, cpu_budget: int, disk_budget: int | None) -> Placement:
    """Place, then again with GPU 0's budget reduced by what running the offloaded blocks costs it."""
    budgets = [gpu_budget] * n_gpus
    pl = place(items, budgets, cpu_budget, disk_budget)
    extra0 = pl.offloaded_kv_bytes + pl.largest_offloaded_gpu_bytes
    if n_gpus and extra0:
        budgets[0] -= extra0
        pl = place(items, budgets, cpu_budget, disk_budget)
    return pl


def requirements(precision: str, transformers_spec: str) -> dict[str, Requirement]:
    req = {"transformers": Requirement(transformers_spec, "the memory model was computed for these versions"),
           "accelerate": Requirement(">=1.0", "explicit device maps")}
    if precision in policy.BNB_ALL or precision.startswith("bnb"):
        req["bitsandbytes"] = Requirement(">=0.45", f"{precision} weights")
    if precision == "mxfp4":
        mx = behaviour("mxfp4_requirements", version_of_requirement(transformers_spec))
        req["kernels"] = Requirement(f">={version_text(mx['kernels'][0])},<{version_text(mx['kernels'][1])}",
                                     "MXFP4 kept on the GPU")
        req["triton"] = Requirement(f">={version_text(mx['triton_min'])}", "MXFP4 kept on the GPU")
    if precision.startswith(("gptq", "awq")):
        req["gptqmodel"] = Requirement(">=2.0", f"{precision} checkpoint")
    return req


def build_candidate(spec: ModelSpec, profile: ClusterProfile, part: Partition, precision: str, n_gpus: int,
                    opts, offload: str) -> Plan:
    """Evaluate one candidate; ``offload`` is "none" (all on GPUs), "cpu" (GPU+CPU) or "disk" (GPU+CPU+disk)."""
    wl = opts.workload
    gpu = part.gpu if n_gpus > 0 else None
    t = tables(spec, precision, wl)
    items = _items(spec, t, n_gpus)
    gpu_ov = overhead.gpu_overhead_bytes(gpu) if gpu else 0
    host = hostmod.host_budget(part.mem_bytes, max(t.w_gpu.values(), default=0))
    cpu_budget = host.weights_budget_bytes if (offload != "none" or n_gpus == 0) else 0
    if n_gpus == 0:  # CPU-only: the activations live in host RAM too
        cpu_budget = max(0, cpu_budget - t.act)
    disk_budget = (part.scratch_bytes if part.scratch_bytes is not None else None) if offload == "disk" else 0
    pl = _place(items, (gpu.memory_bytes - gpu_ov - t.act) if gpu else 0, n_gpus, cpu_budget, disk_budget)

    devices = _devices(spec, t, pl, n_gpus, gpu, gpu_ov, host, part)
    cpu_names = pl.per_device_blocks.get("cpu", [])
    disk_names = pl.per_device_blocks.get("disk", [])
    status, rejection, reason = pl.status, None, ""
    if not pl.fits or any(d.total_bytes > d.capacity_bytes for d in devices if d.is_gpu):
        status = "does-not-fit"
        rejection, reason = _why_not(spec, precision, t, pl, n_gpus, gpu, gpu_ov, host, offload, devices)
    cpu = next((d for d in devices if d.device == "cpu"), None)
    host_ram = cpu.total_bytes if cpu else host.process_bytes + host.load_peak_bytes
    usable = int(part.mem_bytes * hostmod.HOST_USABLE_FRACTION)
    if status != "does-not-fit" and host_ram > usable:
        status, rejection = "does-not-fit", Rejection.HOST_MEMORY
        reason = (f"{precision}: the job needs {_g(host_ram)} GiB of host RAM (process, loading peak"
                  f"{', CPU weights' if cpu and cpu.weights_bytes else ''}) but {hostmod.HOST_USABLE_FRACTION:.0%} of "
                  f"the node's {_g(part.mem_bytes)} GiB is {_g(usable)} GiB; plan for nodes with more RAM")
    sp = _speed(spec, profile, part, t, pl, n_gpus, gpu, precision, wl)
    if status in ("cpu-offload", "disk-offload") and sp.decode_tokens_per_s < opts.min_tokens_per_s:
        where = {"cpu-offload": "CPU offload", "disk-offload": "disk offload"}[status]
        rejection, status = Rejection.TOO_SLOW, "does-not-fit"
        reason = (f"{precision} with {where} runs at ~{sp.decode_tokens_per_s:.3g} tokens/s, slower than the floor of "
                  f"{opts.min_tokens_per_s:g} tokens/s (--min-tokens-per-s)")
    dtype = policy.dtype_for(precision, gpu)
    offloaded = bool(cpu_names or disk_names) and n_gpus > 0
    return Plan(
        model_id=spec.model_id, revision=spec.revision, source=spec.source, architecture=spec.architecture,
        engine="transformers", status=status, rejection=rejection, reason=reason, precision=precision, dtype=dtype,
        quantization=policy.quantization_for(spec, precision, offloaded=offloaded, dtype=dtype),
        gpu_type=gpu.name if gpu else None, gpus=n_gpus, nodes=1, device_map=dict(pl.device_map),
        devices=tuple(devices),
        offload_folder="vplan-offload" if disk_names and t.writes_offload_folder else None,
        host_ram_bytes=host_ram,
        disk_bytes=pl.disk_bytes, hub_cache_bytes=spec.checkpoint_bytes, checkpoint_bytes=spec.checkpoint_bytes,
        params_total=spec.params_total, params_active=spec.params_active,
        kv_bytes_per_token=kv.kv_bytes_per_token(spec, compute_bytes(precision)), kv_cache_bytes=sum(t.kv.values()),
        workload=wl, speed=sp, cluster=cluster_shape(profile, part), config=spec.config,
        requirements=requirements(precision, opts.transformers_spec),
        conditions=policy.conditions(spec, precision), warnings=tuple(spec.warnings),
    )


def cluster_shape(profile: ClusterProfile, part: Partition) -> ClusterShape:
    return ClusterShape(profile=profile.name, partition=part.name, gpu=part.gpu.name if part.gpu else None,
                        gpus_per_node=part.gpus_per_node, cpus_per_node=part.cpus_per_node, mem_bytes=part.mem_bytes,
                        nodes=part.nodes, storage=profile.storage, storage_bytes_per_s=profile.storage_bytes_per_s,
                        assumed=profile.assumed)


def _devices(spec, t: Tables, pl: Placement, n_gpus, gpu, gpu_ov, host, part) -> list[DeviceBudget]:
    devices = []
    for i in range(n_gpus):
        names = pl.per_device_blocks.get(str(i), [])
        devices.append(DeviceBudget(
            device=str(i),
            weights_bytes=sum(t.w_gpu[nm] for nm in names),  # a tied lm_head holds 0: counted once
            kv_cache_bytes=sum(t.kv.get(nm, 0) for nm in names) + (pl.offloaded_kv_bytes if i == 0 else 0),
            activation_bytes=t.act + (pl.largest_offloaded_gpu_bytes if i == 0 else 0),
            overhead_bytes=gpu_ov, capacity_bytes=gpu.memory_bytes))
    cpu_names = pl.per_device_blocks.get("cpu", [])
    disk_names = pl.per_device_blocks.get("disk", [])
    if cpu_names or n_gpus == 0 or disk_names:
        cpu_kv = sum(t.kv.get(nm, 0) for nm in cpu_names) if n_gpus == 0 else 0
        devices.append(DeviceBudget(
            device="cpu", weights_bytes=sum(t.w_cpu[nm] for nm in cpu_names), kv_cache_bytes=cpu_kv,
            activation_bytes=t.act if n_gpus == 0 else 0, overhead_bytes=host.process_bytes + host.load_peak_bytes,
            capacity_bytes=part.mem_bytes))
    if disk_names:
        # served from disk: written to the offload folder, or read in place from the checkpoint's shards
        stored = spec.checkpoint.bytes_by_block if spec.checkpoint and spec.checkpoint.bytes_by_block else {}
        on_disk = pl.disk_bytes if t.writes_offload_folder else sum(stored.get(nm, t.w_cpu[nm]) for nm in disk_names)
        devices.append(DeviceBudget(device="disk", weights_bytes=on_disk, capacity_bytes=part.scratch_bytes or 0))
    return devices


def _speed(spec, profile, part, t: Tables, pl: Placement, n_gpus, gpu, precision, wl):
    on_gpu = [nm for i in range(n_gpus) for nm in pl.per_device_blocks.get(str(i), [])]
    cpu_names = pl.per_device_blocks.get("cpu", [])
    disk_names = pl.per_device_blocks.get("disk", [])
    on_gpu_set = set(on_gpu)
    quantized = [b for b in spec.blocks if b.name in on_gpu_set] if precision in QUANTIZED_LINEARS else []
    mean_context = wl.prompt_tokens + wl.max_new_tokens // 2
    kv_mean = kv.kv_cache_bytes_by_block(spec, mean_context, wl.batch, compute_bytes(precision),
                                         prompt_tokens=wl.prompt_tokens)
    return estimate_speed(SpeedInputs(
        gpu=gpu, gpus=n_gpus,
        gpu_read_bytes_per_step=read_bytes_per_step(spec, t.w_gpu, on_gpu, wl.batch),
        kv_bytes_mean=sum(kv_mean.get(nm, 0) for nm in on_gpu) + (pl.offloaded_kv_bytes if n_gpus else 0),
        quantized_linears=sum(len(b.linear_shapes) for b in quantized),
        quantized_linear_params=sum(b.params.get("linear", 0) for b in quantized),
        host_transfer_bytes_per_step=sum(t.w_cpu[nm] for nm in cpu_names) if n_gpus > 0 else 0,
        disk_read_bytes_per_step=sum(t.w_cpu[nm] for nm in disk_names),
        cpu_read_bytes_per_step=(read_bytes_per_step(spec, t.w_cpu, cpu_names, wl.batch)
                                 + sum(kv_mean.get(nm, 0) for nm in cpu_names)) if n_gpus == 0 else 0,
        layers=spec.num_layers, moe_layers=spec.moe.moe_layers if spec.moe else 0,
        decode_flops=2.0 * spec.params_active * wl.batch,
        prefill_flops=prefill_flops(spec.params_active, wl.prompt_tokens, wl.batch,
                                    4.0 * spec.num_layers * spec.num_heads * spec.head_dim),
        prompt_tokens=wl.prompt_tokens, new_tokens=wl.max_new_tokens, batch=wl.batch, precision=precision,
        checkpoint_bytes=spec.checkpoint_bytes, offload_write_bytes=pl.disk_bytes,
        storage_bytes_per_s=profile.storage_bytes_per_s, storage=profile.storage,
        scratch_bytes_per_s=profile.scratch_bytes_per_s, cpus=part.cpus_per_node))


def read_bytes_per_step(spec: ModelSpec, w: dict[str, int], names, batch: int) -> int:
    """Weight bytes one decode step reads from ``names``: not the input-embedding table (a gather of ``batch``
    rows) unless the head is tied to it; of routed experts, the share the batch's tokens touch (each picks
    top_k of n: 1 - (1 - k/n)^batch of them)."""
    touched = 1.0
    if spec.moe and spec.moe.n_routed_experts:
        touched = 1.0 - (1.0 - spec.moe.top_k / spec.moe.n_routed_experts) ** batch
    total = 0.0
    blocks = {b.name: b for b in spec.blocks}
    for nm in names:
        if nm == "model.embed_tokens" and not spec.tie_word_embeddings:
            continue
        b = blocks[nm]
        routed = b.routed_expert_params / b.params_total if b.params_total else 0.0
        total += w[nm] * (1.0 - routed * (1.0 - touched))
    return int(total)


def _g(n: int) -> str:
    return f"{n / GIB:.1f}"


def _why_not(spec, precision, t: Tables, pl: Placement, n_gpus, gpu, gpu_ov, host, offload,
             devices) -> tuple[str, str]:
    """The binding constraint of a candidate that does not fit, as (Rejection kind, one sentence)."""
    total_w, total_kv = sum(t.w_gpu.values()), sum(t.kv.values())
    if offload == "none" and n_gpus > 0:
        need = total_w + total_kv + n_gpus * (t.act + gpu_ov)
        return Rejection.GPU_MEMORY, (
            f"{precision} needs {_g(need)} GiB on GPUs (weights {_g(total_w)} + KV {_g(total_kv)} + activations "
            f"{_g(t.act)}/GPU + overhead {_g(gpu_ov)}/GPU); {n_gpus} x {gpu.name} hold {_g(n_gpus * gpu.memory_bytes)} GiB")
    gpu0 = next((d for d in devices if d.device == "0"), None)
    if gpu0 is not None and gpu0.total_bytes > gpu0.capacity_bytes:
        return Rejection.GPU0_OFFLOAD_ROOM, (
            f"{precision}: GPU 0 runs every offloaded layer and must hold activations {_g(gpu0.activation_bytes)} + KV "
            f"{_g(gpu0.kv_cache_bytes)} + overhead {_g(gpu0.overhead_bytes)} + its own weights {_g(gpu0.weights_bytes)} GiB "
            f"= {_g(gpu0.total_bytes)} GiB of its {_g(gpu0.capacity_bytes)} GiB; shorten the context or the batch")
    where = f"{n_gpus} GPU(s) + " if n_gpus else ""
    tail = {"cpu": "; disk offload is the next option", "disk": " + the disk budget (local scratch)",
            "none": ""}[offload if n_gpus else ("none" if offload == "none" else offload)]
    return Rejection.OFFLOAD_CAPACITY, (
        f"{precision}: {_g(total_w)} GiB of weights exceed {where}{_g(host.weights_budget_bytes)} GiB of host RAM for "
        f"weights{tail}")
