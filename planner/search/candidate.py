"""One candidate plan: precision x GPU count x offload mode -> per-device byte budgets, map, speed.

Per GPU: weights + KV of the blocks placed there + activation peak + overhead (CUDA context,
workspaces, allocator reserve). GPU 0 also holds the KV of offloaded layers and, while an offloaded
block runs, that block's weights (accelerate executes cpu/disk blocks on the main device).
Host RAM: CPU-offloaded weights (fp32 under bitsandbytes' CPU offload), the loading peak and the
process. Disk: offloaded weights written to the offload folder.
"""
from __future__ import annotations

import datetime as _dt

from vplan.planner.memory import activations

from vplan.planner.memory import host as hostmod

from vplan.planner.memory import weights as memory

from vplan.planner.memory import overhead
from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.hardware.gpus import GpuSpec
from vplan.planner.model.spec import ModelSpec
from vplan.planner.search.placement import PlacementItem, place
from vplan.planner.plan.contract import DeviceBudget, Plan, Workload
from vplan.planner.search.speed import SpeedInputs, estimate_speed, prefill_flops
from vplan.planner.units import GIB

VPLAN_VERSION = "0.1.0"
DTYPE_OF = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
BNB = ("int8", "nf4")


def compute_precision(gpu: GpuSpec | None) -> str:
    """The unquantized precision a device computes in: bf16 where supported, else fp16; CPU: bf16."""
    if gpu is None:
        return "bf16"
    return "bf16" if gpu.bf16 else "fp16"


def is_prequantized(spec: ModelSpec) -> bool:
    return bool(spec.checkpoint_quant)


def can_dequantize(spec: ModelSpec) -> bool:
    """MXFP4 and fine-grained FP8 checkpoints load dequantized to bf16 where the kernels are missing."""
    return _quant_method(spec) in ("mxfp4", "fp8")


def _quant_method(spec: ModelSpec) -> str | None:
    q = spec.checkpoint_quant or {}
    return q.get("method")


def native_precision(spec: ModelSpec, gpu: GpuSpec | None) -> str | None:
    """The checkpoint's own format if the device can keep it, else None (dequantized or plain)."""
    method = _quant_method(spec)
    if method is None:
        return None
    if method == "mxfp4":
        return "mxfp4" if gpu is not None and gpu.mxfp4_kernels else None
    if method == "fp8":
        return "fp8" if gpu is not None and gpu.fp8 else None
    if method in ("gptq", "awq"):
        bits = (spec.checkpoint_quant or {}).get("bits", 4)
        return f"{method}-int{bits}" if gpu is not None else None
    if method == "bitsandbytes":
        q = spec.checkpoint_quant or {}
        return "bnb-nf4" if q.get("load_in_4bit") else "bnb-int8"
    return None


def quantization_for(spec: ModelSpec, precision: str, offloaded: bool, dtype: str) -> dict | None:
    """The runtime's quantization_config (method + kwargs); never the removed load_in_8bit= keyword."""
    method = _quant_method(spec)
    if precision == "int8":
        cfg = {"load_in_8bit": True}
        if offloaded:
            cfg["llm_int8_enable_fp32_cpu_offload"] = True
        return {"method": "bitsandbytes", "config": cfg}
    if precision == "nf4":
        cfg = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype}
        if offloaded:
            cfg["llm_int8_enable_fp32_cpu_offload"] = True
        return {"method": "bitsandbytes", "config": cfg}
    if precision == "mxfp4":
        return {"method": "mxfp4", "config": {"dequantize": False}}
    if precision == "fp8":
        if method == "fp8":
            return None  # the checkpoint's own quantization_config is used as is
        return {"method": "fp8", "config": {"activation_scheme": "dynamic", "weight_block_size": [128, 128]}}
    if method == "mxfp4":  # bf16 fallback of an MXFP4 checkpoint
        return {"method": "mxfp4", "config": {"dequantize": True}}
    if method == "fp8":
        return {"method": "fp8", "config": {"dequantize": True}}
    return None


def _conditions(spec: ModelSpec, precision: str, gpu: GpuSpec | None) -> tuple[str, ...]:
    out = []
    if precision == "mxfp4":
        out.append("MXFP4 stays MXFP4 only with CUDA CC >= 7.5, triton >= 3.4 and `kernels` (>=0.18.2,<0.19) installed; "
                   "otherwise transformers dequantizes to bf16 while loading (see the bf16 alternative)")
    if precision in BNB:
        out.append("bitsandbytes must be installed on the node")
    if precision == "fp8" and _quant_method(spec) != "fp8":
        out.append("fp8 quantization on load needs a GPU with compute capability >= 8.9")
    if precision.startswith(("gptq", "awq")):
        out.append("gptqmodel must be installed on the node")
    return tuple(out)


def _requirements(precision: str) -> dict:
    req = {"transformers": ">=5.0", "accelerate": ">=1.0"}
    if precision in BNB or precision.startswith("bnb"):
        req["bitsandbytes"] = ">=0.45"
    if precision == "mxfp4":
        req["kernels"] = ">=0.18.2,<0.19"
        req["triton"] = ">=3.4"
    if precision.startswith(("gptq", "awq")):
        req["gptqmodel"] = ">=2.0"
    return req


def build_candidate(spec: ModelSpec, profile: ClusterProfile, part: Partition, precision: str, n_gpus: int,
                    opts, offload: str) -> Plan:
    """Evaluate one candidate; ``offload`` is "none", "cpu" (GPU+CPU) or "disk" (GPU+CPU+disk)."""
    wl: Workload = opts.workload
    gpu = part.gpu if n_gpus > 0 else None
    compute = compute_precision(gpu)
    dtype = DTYPE_OF[compute]
    cache_bytes = 2  # KV cache in the compute dtype (bf16/fp16)
    w_gpu = memory.weight_bytes_by_block(spec, precision)
    w_cpu = memory.weight_bytes_by_block(spec, precision, cpu_offload_fp32=precision in BNB)
    kv = memory.kv_cache_bytes_by_block(spec, wl.context_tokens, wl.batch, cache_bytes, prompt_tokens=wl.prompt_tokens)
    act = activations.activation_peak_bytes_for_spec(spec, batch=wl.batch, prompt_tokens=wl.prompt_tokens,
                                                     attn_implementation=wl.attn_implementation, dtype_bytes=cache_bytes)
    writes_offload_folder = hostmod.needs_offload_folder(spec, precision)
    tied = spec.tie_word_embeddings
    items = [
        PlacementItem(
            name=b.name,
            gpu_bytes=w_gpu[b.name] + kv.get(b.name, 0),
            cpu_bytes=w_cpu[b.name] + (kv.get(b.name, 0) if n_gpus == 0 else 0),
            disk_bytes=w_cpu[b.name] if writes_offload_folder else 0,
            kv_bytes=kv.get(b.name, 0),
            follows="model.embed_tokens" if (tied and b.name == "lm_head" and "model.embed_tokens" in w_gpu) else None,
        )
        for b in spec.blocks
    ]
    gpu_ov = overhead.gpu_overhead_bytes(gpu) if gpu else 0
    host = hostmod.host_budget(spec, part.mem_bytes, precision, max(w_gpu.values(), default=0))
    cpu_budget = host.weights_budget_bytes if (offload != "none" or n_gpus == 0) else 0
    disk_budget = None if offload == "disk" else 0
    if n_gpus == 0 and offload == "none":
        disk_budget = 0
    if part.scratch_bytes is not None and disk_budget is None:
        disk_budget = part.scratch_bytes

    if n_gpus > 0:
        budgets = [gpu.memory_bytes - gpu_ov - act for _ in range(n_gpus)]
        pl = place(items, budgets, cpu_budget, disk_budget)
        # GPU 0 also runs the offloaded blocks: their KV and one block's weights at a time.
        extra0 = pl.offloaded_kv_bytes + pl.largest_offloaded_gpu_bytes
        if extra0:
            budgets[0] -= extra0
            pl = place(items, budgets, cpu_budget, disk_budget)
            extra0 = pl.offloaded_kv_bytes + pl.largest_offloaded_gpu_bytes
    else:
        budgets = []
        pl = place(items, [], cpu_budget, disk_budget)
        extra0 = 0

    devices: list[DeviceBudget] = []
    for i in range(n_gpus):
        names = pl.per_device_blocks.get(str(i), [])
        devices.append(DeviceBudget(
            device=str(i),
            weights_bytes=sum(w_gpu[nm] for nm in names),  # tied lm_head holds 0: counted once
            kv_cache_bytes=sum(kv.get(nm, 0) for nm in names) + (pl.offloaded_kv_bytes if i == 0 else 0),
            activation_bytes=act + (pl.largest_offloaded_gpu_bytes if i == 0 else 0),
            overhead_bytes=gpu_ov,
            capacity_bytes=gpu.memory_bytes,
            max_memory_bytes=max(0, budgets[i]) if i < len(budgets) else 0,
        ))
    cpu_names = pl.per_device_blocks.get("cpu", [])
    cpu_weights = sum(w_cpu[nm] for nm in cpu_names)
    cpu_kv = sum(kv.get(nm, 0) for nm in cpu_names) if n_gpus == 0 else 0
    cpu_act = act if n_gpus == 0 else 0
    host_total = cpu_weights + cpu_kv + cpu_act + host.process_bytes + host.load_peak_bytes
    if cpu_names or n_gpus == 0 or pl.per_device_blocks.get("disk"):
        devices.append(DeviceBudget(device="cpu", weights_bytes=cpu_weights, kv_cache_bytes=cpu_kv, activation_bytes=cpu_act,
                                    overhead_bytes=host.process_bytes + host.load_peak_bytes, capacity_bytes=part.mem_bytes,
                                    max_memory_bytes=cpu_budget))
    disk_names = pl.per_device_blocks.get("disk", [])
    if disk_names:
        # weights served from disk: written to the offload folder, or read in place from the checkpoint shards
        stored = spec.checkpoint.bytes_by_block if spec.checkpoint and spec.checkpoint.bytes_by_block else {}
        on_disk = pl.disk_bytes if writes_offload_folder else sum(stored.get(nm, w_cpu[nm]) for nm in disk_names)
        devices.append(DeviceBudget(device="disk", weights_bytes=on_disk, capacity_bytes=part.scratch_bytes or 0))

    status = pl.status
    reason = None
    gpu_need = sum(d.total_bytes for d in devices if d.device.isdigit())
    if n_gpus > 0 and any(d.total_bytes > d.capacity_bytes for d in devices if d.device.isdigit()):
        status = "does-not-fit"
    if not pl.fits or status == "does-not-fit":
        status = "does-not-fit"
        reason = _why_not(spec, precision, n_gpus, gpu, items, w_gpu, kv, act, gpu_ov, host, part, offload, pl)

    # speed
    active_ratio = spec.params_active / spec.params_total if spec.params_total else 1.0
    on_gpu = [nm for i in range(n_gpus) for nm in pl.per_device_blocks.get(str(i), [])]
    gpu_read = int(sum(w_gpu[nm] for nm in on_gpu) * active_ratio + sum(kv.get(nm, 0) for nm in on_gpu) + pl.offloaded_kv_bytes)
    host_xfer = sum(w_cpu[nm] for nm in cpu_names) if n_gpus > 0 else 0
    disk_read = sum(w_cpu[nm] for nm in disk_names)
    cpu_read = int(sum(w_cpu[nm] for nm in cpu_names) * active_ratio + cpu_kv) if n_gpus == 0 else 0
    moe_layers = spec.moe.moe_layers if spec.moe else 0
    attn_pair = 4.0 * spec.num_layers * spec.num_heads * spec.head_dim
    sp = estimate_speed(SpeedInputs(
        gpu=gpu, gpus=n_gpus, gpu_read_bytes_per_step=gpu_read, host_transfer_bytes_per_step=host_xfer,
        disk_read_bytes_per_step=disk_read, cpu_read_bytes_per_step=cpu_read, layers=spec.num_layers,
        moe_layers=moe_layers, prefill_flops=prefill_flops(spec.params_active, wl.prompt_tokens, wl.batch, attn_pair),
        prompt_tokens=wl.prompt_tokens, batch=wl.batch, precision=precision, checkpoint_bytes=spec.checkpoint_bytes,
        offload_write_bytes=pl.disk_bytes, storage_bytes_per_s=profile.storage_bytes_per_s,
        scratch_bytes_per_s=profile.scratch_bytes_per_s, cpus=part.cpus_per_node,
    ))
    if status != "does-not-fit" and status != "fits" and sp.decode_tokens_per_s < opts.min_tokens_per_s:
        reason = (f"{precision} with {_where(status)} runs at ~{sp.decode_tokens_per_s:.3g} tokens/s, slower than the "
                  f"floor of {opts.min_tokens_per_s:g} tokens/s (--min-tokens-per-s)")
        status = "does-not-fit"
    offloaded = bool(cpu_names or disk_names) and n_gpus > 0
    return Plan(
        model_id=spec.model_id, revision=spec.revision, source=spec.source, architecture=spec.architecture,
        status=status, precision=precision, dtype=dtype,
        quantization=quantization_for(spec, precision, offloaded, dtype),
        gpu_type=gpu.name if gpu else None, gpus=n_gpus,
        device_map=dict(pl.device_map), devices=tuple(devices),
        offload_folder="vplan-offload" if disk_names and writes_offload_folder else None,  # VPLAN_OFFLOAD_FOLDER overrides (sbatch: node-local scratch)
        host_ram_bytes=host_total, disk_bytes=pl.disk_bytes, hub_cache_bytes=spec.checkpoint_bytes,
        checkpoint_bytes=spec.checkpoint_bytes, params_total=spec.params_total, params_active=spec.params_active,
        kv_bytes_per_token=memory.kv_bytes_per_token(spec, cache_bytes), kv_cache_bytes=sum(kv.values()),
        workload=wl, speed=sp,
        cluster={"profile": profile.name, "partition": part.name, "gpu": gpu.name if gpu else None,
                 "gpus_per_node": part.gpus_per_node, "cpus_per_node": part.cpus_per_node, "mem_bytes": part.mem_bytes},
        config=spec.config, trust_remote_code=False, requirements=_requirements(precision),
        conditions=_conditions(spec, precision, gpu), warnings=tuple(spec.warnings), reason=reason,
        vplan_version=VPLAN_VERSION,
        created_at=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
    )


def _where(status: str) -> str:
    return {"cpu-offload": "CPU offload", "disk-offload": "disk offload"}.get(status, status)


def _why_not(spec, precision, n_gpus, gpu, items, w_gpu, kv, act, gpu_ov, host, part, offload, pl) -> str:
    total_w = sum(w_gpu.values())
    total_kv = sum(kv.values())
    if n_gpus == 0 or offload != "none":
        if not pl.fits:
            return (f"{precision}: {total_w / GIB:.1f} GiB of weights exceed "
                    f"{n_gpus} GPU(s) + {host.weights_budget_bytes / GIB:.1f} GiB of host RAM for weights"
                    + (" + disk" if offload == "disk" else "; disk offload not allowed here"))
        return f"{precision}: GPU 0 cannot also hold the offloaded layers' KV cache and one offloaded block"
    need = total_w + total_kv + n_gpus * (act + gpu_ov)
    usable = n_gpus * gpu.memory_bytes
    return (f"{precision} needs {need / GIB:.1f} GiB on GPUs (weights {total_w / GIB:.1f} + KV {total_kv / GIB:.1f} + "
            f"activations {act / GIB:.1f}/GPU + overhead {gpu_ov / GIB:.1f}/GPU); {n_gpus} x {gpu.name} have {usable / GIB:.1f} GiB")
