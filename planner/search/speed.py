"""Speed model: decode tokens/s, prefill tokens/s and load seconds of a placement (transformers eager generate()).

One decode step is two streams of work that overlap: the host (Python and kernel launches: a fixed cost per
decoder layer plus, for quantized weights, a cost per quantized Linear call) and the GPUs (weights, KV cache
and temporaries over HBM; matmul FLOPs). Where nothing synchronises, the step takes the longer of the two; the
evidence shows where they do not overlap (LLM.int8's outlier decomposition syncs on every call; bitsandbytes'
4-bit dequantize-then-matmul path at batch > 1 only half overlaps). A device map runs its layers in sequence,
so per-GPU device times add; CPU- and disk-offloaded blocks are copied to GPU 0 at every forward (accelerate's
AlignDevicesHook) and add their transfer time.

Every constant is fitted to, or checked against, the published measurements in benchmarks/evidence/
(speed_rows.json, row ids E....); benchmarks/speed_evidence.py compares every plannable row with this model
(benchmarks/results/speed_evidence.md). The measurements used transformers 4.3x-4.46; no GPU was lent to the
session that wrote this, and ``Speed.assumptions`` repeats the figures in every plan.
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.hardware.cluster import DEFAULT_STORAGE
from vplan.planner.hardware.gpus import GpuSpec
from vplan.planner.plan.contract import Speed

# Host time of one decoder layer per step in eager generate() (Python + launches), on the data-centre hosts of
# the evidence: H100 Llama-3.1-8B bf16 24.4 ms / 32 layers (E0071), Qwen2.5-32B 50.8 ms / 64 (E0092), A100
# Llama-2-13B fp16 30.43 ms / 40 (E0202): 0.76-0.79 ms; those steps stay flat from batch 1 to 16-32 (E0085,
# E0102, E0214), so they are host-bound, not bandwidth-bound.
LAYER_HOST_S = 0.8e-3
# MoE layers dispatch per expert group: extra host cost per MoE layer per step. No published transformers MoE
# decode measurement was found: an assumption, stated in every MoE plan.
MOE_LAYER_HOST_S = 1.0e-3
# Host speed relative to those data-centre hosts, for GPUs whose evidence came from other hosts (the per-call
# costs below scale with it). RTX 4090 (a desktop): int8 without decomposition is host-bound at 22.0 ms for
# Llama-3.1-8B (E0033) and 32.6 ms for Qwen2.5-14B (E0059), 0.42 x the H100 host's cost; T4: 90.2 ms (E0006)
# and nf4 60.8 ms (E0002) for Qwen2.5-3B, 1.5 x. Unlisted GPUs: 1.0.
HOST_FACTOR = {"RTX-4090": 0.42, "T4": 1.5}
# Host cost of one quantized Linear call beyond an nn.Linear, bitsandbytes >= 0.45, H100 host:
# - int8 without outlier decomposition (quantize activations, int8 matmul, dequantize): (52.2 - 24.4) ms /
#   224 Linears = 124 us for Llama-3.1-8B (E0076 vs E0071), 117 us Qwen2.5-32B (E0095), 121 us Llama-3.1-70B
#   (E0109, over 80 layers x 0.8 ms).
# - LLM.int8's outlier decomposition (threshold 6) adds a host sync per call (the outlier columns are found on
#   the GPU), a gather and a second matmul: 132 / 176 / 123 us more (E0077, E0096, E0110 over E0076, E0095,
#   E0109), and the host and device no longer overlap (below).
# - 4-bit (nf4/fp4): the fused gemv at batch 1 costs 33-43 us with bitsandbytes 0.45 (E0072, E0093, E0107), 60 us
#   with 0.44.1 (E0073) and 69-121 us with double quantization (E0074, E0075); the dequantize-then-matmul path at
#   batch > 1 about the same host time plus its HBM traffic (DEQUANT_BYTES_PER_PARAM). 50 us: the middle of the
#   versions and settings measured, since newer bitsandbytes releases are unmeasured.
# - GPTQ Marlin: none measurable, 28.96 ms against fp16's 30.43 for Llama-2-13B on an A100 (E0206, E0202); AWQ
#   is assumed to be the same (no transformers measurement found).
# - fp8 (fine-grained, activations quantized per call): no measurement found; assumed the int8 cost (same
#   structure: quantize, low-precision matmul, rescale).
CALL_HOST_S = {"int8": 0.12e-3, "int8-nodecomp": 0.12e-3, "bnb-int8": 0.12e-3, "nf4": 0.05e-3, "bnb-nf4": 0.05e-3,
               "fp8": 0.12e-3, "gptq-int4": 0.0, "gptq-int8": 0.0, "awq-int4": 0.0}
OUTLIER_HOST_S = 0.11e-3
DECOMPOSED = ("int8", "bnb-int8")  # bitsandbytes int8 with llm_int8_threshold > 0 (the default 6.0)
FOUR_BIT_BNB = ("nf4", "bnb-nf4")
# bitsandbytes 4-bit at batch > 1 dequantizes each weight to the compute dtype (2 bytes/param written) and the
# matmul reads it back (2 more, part of it from L2): RTX 4090 Qwen2.5-14B nf4 at batch 8 takes 69.6 ms (E0063),
# which leaves at most 3 bytes/param at 70 % of 1008 GB/s after the packed weights.
DEQUANT_BYTES_PER_PARAM = 3
# On that path host and device times add: H100 Llama-3.1-8B nf4 batch 8 47.6 ms = 36.8 host + 11 device (E0079),
# Llama-3.1-70B 234.8 ms (E0111), T4 Qwen2.5-3B 96.0 ms (E0011); the RTX 4090 does better (E0038: predicted
# 1.25x slow).
# Weights and KV over HBM/GDDR: RTX 4090 Llama-3.1-8B bf16 21.1 ms for 15.0 GB read (E0028: 0.70 of 1008 GB/s);
# A10G/A10 0.60-0.64 (E0459, E0464, E0477); vLLM's CUDA-graph decode of Llama-3.1-8B on an H100 reads 16 GB in
# 6.44 ms (E0582: 0.75 of 3350 GB/s).
HBM_EFFICIENCY = 0.7
# The KV cache costs each decode step about this many passes over its bytes (cache torch.cat, repeat_kv and
# masked sdpa in the measured transformers): A100 Llama-2-13B fp16 at batch 16 decodes in 40.24 ms against
# 30.43 at batch 1 (E0226, E0202: ~9 passes of 3.4 GB), 512/512-token generate at batch 16 69.94 ms (E0135,
# ~7-8 passes); RTX 4090 Llama-3.1-8B bf16 batch 32 30.4 ms (E0046, ~13 passes).
KV_PASSES_PER_STEP = 10
# Matmul FLOPs against dense bf16 peak: prefill of 512 tokens on an A100 (Llama-2-13B fp16): 96.4 ms at batch 1
# (E0139: 45 %), 1209 ms at batch 16 (E0168: 57 %). Decode steps use the same rate when compute-bound.
MATMUL_MFU = 0.5
# accelerate copies pageable (not pinned) tensors module by module: about half the pinned link rate; OPT-30B
# fp16 with 14.1 GB CPU-offloaded decodes in 2.37 s/token on a PCIe 3.0 host (E0237: ~6 GB/s, half of ~12).
HOST_LINK_EFFICIENCY = 0.5
# CPU-only execution: memory bandwidth per core and bf16/fp32 matmul throughput per core (assumptions).
CPU_BYTES_PER_S_PER_CORE = 8e9
CPU_MAX_BYTES_PER_S = 120e9
CPU_FLOPS_PER_CORE = 40e9
# Writing an offload folder on node-local NVMe (assumption).
SCRATCH_WRITE_BYTES_PER_S = 1e9


@dataclass(frozen=True)
class SpeedInputs:
    gpu: GpuSpec | None
    gpus: int
    gpu_read_bytes_per_step: int  # weights the GPUs read per decode step (experts touched; not the embedding table)
    kv_bytes_mean: int  # KV cache held on GPUs at the mean decode context, all sequences
    quantized_linears: int  # quantized nn.Linear calls per step on GPUs (0 for compute precisions)
    quantized_linear_params: int  # their weights (the dequantize path's traffic)
    host_transfer_bytes_per_step: int  # cpu-offloaded weights copied to GPU per forward
    disk_read_bytes_per_step: int  # disk-offloaded weights read per forward
    cpu_read_bytes_per_step: int  # weights + KV a CPU-only plan reads per step
    layers: int
    moe_layers: int
    decode_flops: float  # one decode step of the batch
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


def host_seconds(s: SpeedInputs) -> float:
    """Python and kernel launches of one forward (decode step or prefill)."""
    per_call = CALL_HOST_S.get(s.precision, 0.0) + (OUTLIER_HOST_S if s.precision in DECOMPOSED else 0.0)
    base = s.layers * LAYER_HOST_S + s.moe_layers * MOE_LAYER_HOST_S + s.quantized_linears * per_call
    return base * (HOST_FACTOR.get(s.gpu.name, 1.0) if s.gpu else 1.0)


def combine(host: float, device: float, serial: bool) -> float:
    """One forward: host and device overlap unless the path is serial (LLM.int8's per-call sync, bitsandbytes
    4-bit dequantize-then-matmul)."""
    return host + device if serial else max(host, device)


def _gpu_times(s: SpeedInputs, notes: list[str]) -> tuple[float, float, float]:
    """(decode step, prefill forward, host-link transfer) seconds with the model on GPUs."""
    g = s.gpu
    hbm = g.hbm_bytes_per_s * HBM_EFFICIENCY
    flops = g.bf16_tflops * 1e12 * MATMUL_MFU
    dequant_bytes = DEQUANT_BYTES_PER_PARAM * s.quantized_linear_params if s.precision in FOUR_BIT_BNB else 0
    host = host_seconds(s)
    dequant_step = dequant_bytes if s.batch > 1 else 0  # batch 1: the fused gemv_4bit reads the packed weights
    dev = max((s.gpu_read_bytes_per_step + dequant_step + KV_PASSES_PER_STEP * s.kv_bytes_mean) / hbm,
              s.decode_flops / flops)
    decomposed = s.precision in DECOMPOSED
    step = combine(host, dev, decomposed or dequant_step > 0)
    dev_prefill = (s.gpu_read_bytes_per_step + dequant_bytes) / hbm + s.prefill_flops / flops
    prefill = combine(host, dev_prefill, decomposed or dequant_bytes > 0)
    link = g.host_link_bytes_per_s * HOST_LINK_EFFICIENCY
    transfer = s.host_transfer_bytes_per_step / link
    hf = HOST_FACTOR.get(g.name, 1.0)
    notes.append(f"host: {LAYER_HOST_S * 1e3:.1f} ms per decoder layer per step (eager generate)"
                 + (f" x {hf:g} for {g.name} hosts" if hf != 1.0 else "") + _call_note(s)
                 + (f" + {MOE_LAYER_HOST_S * 1e3:.1f} ms per MoE layer (assumed: no published transformers MoE decode "
                    "measurement)" if s.moe_layers else ""))
    notes.append(f"HBM {g.hbm_bytes_per_s / 1e9:.0f} GB/s at {HBM_EFFICIENCY:.0%} for weights + {KV_PASSES_PER_STEP} "
                 "passes over the KV cache per step" + (" + the 4-bit dequantize temporaries at batch > 1"
                                                        if dequant_bytes else ""))
    how = "the longer of host and device time"
    if decomposed:
        how = "host + device time (LLM.int8's outlier decomposition syncs on every Linear call)"
    elif dequant_step:
        how = "host + device time (bitsandbytes 4-bit dequantize-then-matmul at batch > 1)"
    notes.append(f"decode step = {how}")
    if s.host_transfer_bytes_per_step:
        notes.append(f"CPU-offloaded weights ({s.host_transfer_bytes_per_step / 1e9:.1f} GB) cross the host link every step at "
                     f"{link / 1e9:.1f} GB/s ({HOST_LINK_EFFICIENCY:.0%} of {g.host_link_bytes_per_s / 1e9:.0f} GB/s, pageable copies)")
    notes.append(f"matmuls at {MATMUL_MFU:.0%} of {g.bf16_tflops:.0f} dense bf16 TFLOP/s")
    return step, prefill, transfer


def _call_note(s: SpeedInputs) -> str:
    per_call = CALL_HOST_S.get(s.precision, 0.0)
    if not s.quantized_linears or not per_call:
        return ""
    out = f" + {per_call * 1e6:.0f} us per {s.precision} Linear call"
    if s.precision in DECOMPOSED:
        out += f" + {OUTLIER_HOST_S * 1e6:.0f} us outlier decomposition"
    return out


def estimate_speed(s: SpeedInputs) -> Speed:
    notes: list[str] = []
    if s.gpu is not None and s.gpus > 0:
        step, prefill_s, transfer = _gpu_times(s, notes)
    else:
        cpu_bw = min(CPU_MAX_BYTES_PER_S, CPU_BYTES_PER_S_PER_CORE * max(1, s.cpus))
        flops_rate = CPU_FLOPS_PER_CORE * max(1, s.cpus)
        host = host_seconds(s)
        step = s.cpu_read_bytes_per_step / cpu_bw + host
        prefill_s = s.prefill_flops / flops_rate + host
        transfer = 0.0
        notes.append(f"CPU-only: {cpu_bw / 1e9:.0f} GB/s memory bandwidth and {flops_rate / 1e9:.0f} GFLOP/s on {s.cpus} cores")
    disk = s.disk_read_bytes_per_step / s.scratch_bytes_per_s if s.disk_read_bytes_per_step else 0.0
    if disk:
        notes.append(f"disk-offloaded weights ({s.disk_read_bytes_per_step / 1e9:.1f} GB) read every step at "
                     f"{s.scratch_bytes_per_s / 1e9:.1f} GB/s")
    step += transfer + disk
    prefill_s += transfer + disk
    decode = 1.0 / step if step > 0 else float("inf")
    prefill = s.prompt_tokens * s.batch / prefill_s if prefill_s > 0 else float("inf")
    load = s.checkpoint_bytes / s.storage_bytes_per_s + s.offload_write_bytes / SCRATCH_WRITE_BYTES_PER_S
    notes.append(load_note(s.storage, s.storage_bytes_per_s))
    notes.append("fitted to published transformers 4.3x-4.46 measurements (benchmarks/results/speed_evidence.md), "
                 "not calibrated on these nodes")
    # generate() decodes the batch together: one request is a prefill and new_tokens steps, shared by `batch`
    per_batch_s = prefill_s + s.new_tokens * step
    return Speed(
        decode_tokens_per_s=round(decode, 3),
        prefill_tokens_per_s=round(prefill, 1),
        load_seconds=round(load, 1),
        throughput_tokens_per_s=round(decode * s.batch, 3),
        seconds_per_request=round(per_batch_s / s.batch, 3),
        assumptions=tuple(notes),
    )


def load_note(storage: str, bytes_per_s: int) -> str:
    default = (", vplan's default storage kind: a cluster profile sets storage = \"nvme\" or \"page-cache\""
               if storage == DEFAULT_STORAGE else "")
    return f"load reads the checkpoint at {bytes_per_s / 1e9:.1f} GB/s ({storage} storage, cold cache{default})"


def prefill_flops(params_active: int, prompt_tokens: int, batch: int, attn_flops_per_token_pair: float) -> float:
    """2 FLOPs per active parameter per token, plus causal attention (half of the P x P pairs)."""
    dense = 2.0 * params_active * prompt_tokens * batch
    attn = attn_flops_per_token_pair * prompt_tokens * prompt_tokens / 2 * batch
    return dense + attn
