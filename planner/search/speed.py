"""Speed model: decode tokens/s, prefill tokens/s and load seconds of a placement.

Decode of one step reads every active weight and the KV cache once; a device map runs its layers in
sequence, so the per-device times add. Offloaded blocks are copied to GPU 0 at every forward
(accelerate's AlignDevicesHook), so their whole weights cross the host link (and the disk) per step.
Each figure below is a public figure or a stated assumption, not a GPU measurement (no GPU was lent to
the session that wrote this, 2026-11-23); `Speed.assumptions` repeats them in every plan.
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.hardware.gpus import GpuSpec
from vplan.planner.plan.contract import Speed


# Decode GEMV/GEMM at batch 1-8 reaches roughly 70-80 % of datasheet HBM bandwidth.
HBM_EFFICIENCY = 0.75
# accelerate copies pageable (not pinned) tensors module by module: about half the pinned link rate.
HOST_LINK_EFFICIENCY = 0.5
# Python + kernel-launch cost of one decoder layer per step in transformers' eager generate()
# (typical HF decode of a 7B model on an A100: ~25-30 ms/token against ~10 ms of HBM time).
LAYER_OVERHEAD_S = 0.5e-3
# MoE layers dispatch per expert group: extra launch cost per MoE layer per step.
MOE_LAYER_OVERHEAD_S = 1.0e-3
# Prefill matmuls at long prompts reach ~40 % of dense bf16 peak in transformers (sdpa).
PREFILL_MFU = 0.4
# Quantized matmuls run slower than their bytes suggest: bitsandbytes LLM.int8 decomposes outliers and
# re-quantizes activations every call (HF reports 2-4x slower generation than fp16); nf4 dequantizes
# on the fly. Applied to the GPU weight-read time. Public reports, UNMEASURED here.
KERNEL_SLOWDOWN = {"int8": 2.5, "nf4": 1.3, "bnb-int8": 2.5, "bnb-nf4": 1.3, "gptq-int4": 1.2, "awq-int4": 1.2}
# CPU-only execution: memory bandwidth per core and bf16/fp32 matmul throughput per core.
CPU_BYTES_PER_S_PER_CORE = 8e9
CPU_MAX_BYTES_PER_S = 120e9
CPU_FLOPS_PER_CORE = 40e9
# Writing an offload folder on node-local NVMe.
SCRATCH_WRITE_BYTES_PER_S = 1e9


@dataclass(frozen=True)
class SpeedInputs:
    gpu: GpuSpec | None
    gpus: int
    gpu_read_bytes_per_step: int  # active weights + KV read on GPUs per decode step
    host_transfer_bytes_per_step: int  # cpu-offloaded weights copied to GPU per forward
    disk_read_bytes_per_step: int  # disk-offloaded weights read per forward
    cpu_read_bytes_per_step: int  # weights + KV a CPU-only plan reads per step
    layers: int
    moe_layers: int
    prefill_flops: float  # for one forward of prompt_tokens x batch
    precision: str
    prompt_tokens: int
    new_tokens: int
    batch: int
    checkpoint_bytes: int
    offload_write_bytes: int
    storage_bytes_per_s: int
    storage: str  # the profile's storage kind, for the assumption line
    scratch_bytes_per_s: int
    cpus: int


def estimate_speed(s: SpeedInputs) -> Speed:
    notes: list[str] = []
    overhead = s.layers * LAYER_OVERHEAD_S + s.moe_layers * MOE_LAYER_OVERHEAD_S
    cpu_bw = min(CPU_MAX_BYTES_PER_S, CPU_BYTES_PER_S_PER_CORE * max(1, s.cpus))
    transfer = 0.0
    if s.gpu is not None and s.gpus > 0:
        hbm = s.gpu.hbm_bytes_per_s * HBM_EFFICIENCY
        link = s.gpu.host_link_bytes_per_s * HOST_LINK_EFFICIENCY
        slow = KERNEL_SLOWDOWN.get(s.precision, 1.0)
        t_gpu = s.gpu_read_bytes_per_step / hbm * slow
        if slow != 1.0:
            notes.append(f"{s.precision} kernels assumed {slow:g}x slower than their bytes over HBM")
        transfer = s.host_transfer_bytes_per_step / link
        notes.append(f"HBM {s.gpu.hbm_bytes_per_s / 1e9:.0f} GB/s at {HBM_EFFICIENCY:.0%} efficiency for weights+KV read per step")
        if s.host_transfer_bytes_per_step:
            notes.append(
                f"CPU-offloaded weights ({s.host_transfer_bytes_per_step / 1e9:.1f} GB) cross the host link every step at "
                f"{link / 1e9:.1f} GB/s ({HOST_LINK_EFFICIENCY:.0%} of {s.gpu.host_link_bytes_per_s / 1e9:.0f} GB/s, pageable copies)"
            )
        flops_rate = s.gpu.bf16_tflops * 1e12 * PREFILL_MFU
        notes.append(f"prefill at {PREFILL_MFU:.0%} of {s.gpu.bf16_tflops:.0f} dense bf16 TFLOP/s")
    else:
        t_gpu = s.cpu_read_bytes_per_step / cpu_bw
        flops_rate = CPU_FLOPS_PER_CORE * max(1, s.cpus)
        notes.append(f"CPU-only: {cpu_bw / 1e9:.0f} GB/s memory bandwidth and {flops_rate / 1e9:.0f} GFLOP/s on {s.cpus} cores")
    disk = s.disk_read_bytes_per_step / s.scratch_bytes_per_s if s.disk_read_bytes_per_step else 0.0
    if disk:
        notes.append(f"disk-offloaded weights ({s.disk_read_bytes_per_step / 1e9:.1f} GB) read every step at {s.scratch_bytes_per_s / 1e9:.1f} GB/s")
    notes.append(f"{LAYER_OVERHEAD_S * 1e3:.1f} ms launch/Python overhead per layer per step (transformers eager generate)")
    step_s = t_gpu + transfer + disk + overhead
    decode = 1.0 / step_s if step_s > 0 else float("inf")
    prefill_s = s.prefill_flops / flops_rate + transfer + disk + overhead
    prefill = s.prompt_tokens * s.batch / prefill_s if prefill_s > 0 else float("inf")
    load = s.checkpoint_bytes / s.storage_bytes_per_s + s.offload_write_bytes / SCRATCH_WRITE_BYTES_PER_S
    notes.append(f"load reads the checkpoint at {s.storage_bytes_per_s / 1e9:.1f} GB/s ({s.storage} storage, cold cache)")
    notes.append("unmeasured: constants are public figures and assumptions, not GPU calibrations")
    # generate() decodes the batch together: one request is a prefill and new_tokens steps, shared by `batch`
    per_batch_s = s.prompt_tokens * s.batch / prefill + s.new_tokens / decode
    return Speed(
        decode_tokens_per_s=round(decode, 3),
        prefill_tokens_per_s=round(prefill, 1),
        load_seconds=round(load, 1),
        throughput_tokens_per_s=round(decode * s.batch, 3),
        seconds_per_request=round(per_batch_s / s.batch, 3),
        assumptions=tuple(notes),
    )


def prefill_flops(params_active: int, prompt_tokens: int, batch: int, attn_flops_per_token_pair: float) -> float:
    """2 FLOPs per active parameter per token, plus causal attention (half of the P x P pairs)."""
    dense = 2.0 * params_active * prompt_tokens * batch
    attn = attn_flops_per_token_pair * prompt_tokens * prompt_tokens / 2 * batch
    return dense + attn
