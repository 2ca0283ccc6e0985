"""Speed of a vLLM plan: decode per sequence and aggregate at the job's concurrency, prefill, load, job time.

A decode step of one pipeline stage reads that stage's weights once for the whole batch (MoE: the experts the
batch's tokens touch) and each sequence's KV, over HBM; tensor parallelism splits both over the TP ranks and adds
two all-reduces per layer over the node's GPU interconnect; CUDA graphs leave a per-step cost that does not grow
with the layers. With pipeline parallelism vLLM keeps one micro-batch per stage in flight (max_concurrent_batches,
config/vllm.py:577-587), so a token crosses every stage in turn while the stages work on different micro-batches.
Prefill is compute-bound: FLOPs over the GPUs' dense bf16 peak at an MFU, at least one weight read per chunk of
max_num_batched_tokens. Continuous batching interleaves prefill chunks with decode steps; the job time adds them.
Every constant names its source; none is a GPU calibration (no GPU was lent to the session that wrote this).
The ratios to published vLLM measurements are in benchmarks/results/speed_evidence.md (vLLM section).
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.hardware.gpus import GpuSpec
from vplan.planner.plan.contract import Speed

# Share of the datasheet HBM bandwidth vLLM's decode reaches (graph-captured GEMV/GEMM and paged attention).
# Set with the published single-GPU runs of benchmarks/results/vllm_speed_evidence.md in view: vLLM's CI latency
# benchmark (Llama-3-8B, batch 8: 12.3 ms/step on A100-80GB, 6.5 ms on H200) implies 0.7-0.8 of datasheet; 0.75,
# the figure the transformers model uses too.
HBM_EFFICIENCY = 0.75
# Per decode step cost that does not scale with the model: scheduling, input preparation, sampling, detokenizing
# (vLLM V1 overlaps much of it with async scheduling). Public TPOT floors of small models are 2-4 ms (vLLM
# perf-update blog 2024-09-05: 8B on H100 at ~4-6 ms/token); 1.5 ms is used.
STEP_OVERHEAD_S = 1.5e-3
# With --enforce-eager (no CUDA graphs): kernel launches per layer and step (the transformers model: 0.5 ms/layer
# is Python-heavy generate(); vLLM eager runs compiled code, ~0.1 ms/layer).
EAGER_LAYER_OVERHEAD_S = 0.1e-3
# One all-reduce of a decode-sized tensor, latency-bound: NCCL's small-message all-reduce is ~10-30 us on NVLink
# (nccl-tests), vLLM's custom all-reduce at the low end; the CI latency rows at TP 2 and 4 (Llama-3-70B on 4 x
# A100-80GB: 31.2 ms/step) leave ~25 us per all-reduce once the weights are read. PCIe: twice that (ASSUMED).
ALLREDUCE_LATENCY_S = {"nvlink": 25e-6, "pcie": 50e-6}
# Dense share of peak bf16 FLOP/s in prefill (FlashAttention, large GEMMs): MLPerf-class servers reach 50-60 %.
PREFILL_MFU = 0.5
# Compute ceiling of large decode batches (memory-bound below): share of the dense peak.
DECODE_MFU = 0.5
# Between nodes (pipeline stages): per transfer latency and bandwidth, ASSUMED (no profile field yet): 100 Gb/s
# Ethernet or better.
NODE_LINK_BYTES_PER_S = 12.5e9
NODE_LINK_LATENCY_S = 50e-6
# Engine start on top of reading the checkpoint: torch.compile (first start, no cache) and CUDA-graph capture.
# Public logs: "torch.compile takes 6-40 s in total", "Graph capturing finished in 5-30 secs"; 60 s is used.
ENGINE_START_S = 60.0
WEIGHT_ONLY_COMPUTE_SLOWDOWN = 1.3  # Marlin W8A16/W4A16 in compute-bound prefill (dequantize in the kernel)


@dataclass(frozen=True)
class VllmSpeedInputs:
    gpu: GpuSpec
    tp: int
    pp: int
    nodes: int
    stage_layers: int  # layers of the largest stage
    stage_dense_bytes: int  # weights of one rank of the largest stage read every step (not routed experts)
    stage_expert_bytes: int  # routed expert weights of one rank of that stage
    experts: int  # routed experts per MoE layer (0: dense)
    top_k: int
    kv_bytes_per_token: int  # KV one token adds on one rank of the largest stage
    hidden: int
    act_bytes: int
    dense_flops_per_token: float  # 2 x active parameters (whole model)
    attn_flops_per_token_per_context: float  # 4 x layers x heads x head_dim: attention FLOPs per cached token
    prompt_tokens: int
    new_tokens: int
    concurrency: int  # sequences decoded together in the job
    max_num_batched_tokens: int
    checkpoint_bytes: int
    storage_bytes_per_s: int
    weight_only: bool  # Marlin weight-only kernels (fp8 without FP8 tensor cores, mxfp4, gptq/awq)
    enforce_eager: bool = False


def _link(gpu: GpuSpec) -> str:
    return "pcie" if gpu.interconnect_bytes_per_s <= gpu.host_link_bytes_per_s else "nvlink"


def stage_step_s(s: VllmSpeedInputs, batch: int, context: float) -> float:
    """One decode step of one stage for ``batch`` sequences of ``context`` tokens."""
    touched = 1.0 if not s.experts else 1.0 - (1.0 - s.top_k / s.experts) ** batch
    read = s.stage_dense_bytes + s.stage_expert_bytes * touched + batch * context * s.kv_bytes_per_token
    t_mem = read / (s.gpu.hbm_bytes_per_s * HBM_EFFICIENCY)
    flops = (s.dense_flops_per_token + s.attn_flops_per_token_per_context * context) * batch / s.pp / s.tp
    t_compute = flops / (s.gpu.bf16_tflops * 1e12 * DECODE_MFU)
    t = max(t_mem, t_compute)
    if s.tp > 1:
        size = batch * s.hidden * s.act_bytes * 2 * (s.tp - 1) / s.tp
        t += s.stage_layers * 2 * (ALLREDUCE_LATENCY_S[_link(s.gpu)] + size / s.gpu.interconnect_bytes_per_s)
    if s.enforce_eager:
        t += s.stage_layers * EAGER_LAYER_OVERHEAD_S
    return t


def token_latency_s(s: VllmSpeedInputs, concurrency: int) -> float:
    """Seconds between two tokens of one sequence when ``concurrency`` sequences decode together."""
    micro = max(1, -(-concurrency // s.pp))
    context = s.prompt_tokens + s.new_tokens / 2
    send = 0.0
    if s.pp > 1:
        hop = NODE_LINK_LATENCY_S + micro * s.hidden * s.act_bytes * 2 / NODE_LINK_BYTES_PER_S
        send = (s.pp - 1) * hop
    return s.pp * stage_step_s(s, micro, context) + send + STEP_OVERHEAD_S


def prefill_s_per_token(s: VllmSpeedInputs) -> float:
    """Seconds of the whole engine per prompt token, in the throughput sense (every GPU busy)."""
    gpus = s.tp * s.pp
    rate = gpus * s.gpu.bf16_tflops * 1e12 * PREFILL_MFU / (WEIGHT_ONLY_COMPUTE_SLOWDOWN if s.weight_only else 1)
    compute = (s.dense_flops_per_token + s.attn_flops_per_token_per_context * s.prompt_tokens / 2) / rate
    weights = (s.stage_dense_bytes + s.stage_expert_bytes) / (s.gpu.hbm_bytes_per_s * HBM_EFFICIENCY)
    floor = weights / s.max_num_batched_tokens  # each chunk reads the stage's weights once
    tp_comm = 0.0
    if s.tp > 1:
        tp_comm = s.stage_layers * 2 * s.hidden * s.act_bytes * 2 * (s.tp - 1) / s.tp / s.gpu.interconnect_bytes_per_s / s.pp
    return max(compute, floor) + tp_comm


def estimate(s: VllmSpeedInputs) -> Speed:
    lat = token_latency_s(s, s.concurrency)
    per_token_prefill = prefill_s_per_token(s)
    seconds_per_request = s.prompt_tokens * per_token_prefill + s.new_tokens * lat / s.concurrency
    # what one sequence sees: its decode steps, and the prefills of the other sequences the scheduler puts
    # between them while it generates (continuous batching, chunked prefill)
    interleaved = (s.concurrency - 1) * s.prompt_tokens * per_token_prefill / s.new_tokens
    decode = 1.0 / (lat + interleaved)
    load = s.checkpoint_bytes / s.nodes / s.storage_bytes_per_s + ENGINE_START_S
    notes = [
        f"vLLM decode: weights + KV read per step at {HBM_EFFICIENCY:.0%} of {s.gpu.hbm_bytes_per_s / 1e9:.0f} GB/s HBM"
        f", {STEP_OVERHEAD_S * 1e3:.1f} ms per step (scheduler, sampler; CUDA graphs"
        + (" off: +0.1 ms per layer" if s.enforce_eager else "") + ")",
        f"concurrency {s.concurrency}: sequences decoded together (min of the job's requests, max_num_seqs, the KV pool);"
        " per-sequence decode includes the other sequences' prefills scheduled between its steps",
        f"prefill at {PREFILL_MFU:.0%} of {s.gpu.bf16_tflops:.0f} dense bf16 TFLOP/s per GPU",
        f"load: checkpoint over {s.nodes} node(s) at {s.storage_bytes_per_s / 1e9:.1f} GB/s each + {ENGINE_START_S:.0f} s "
        "engine start (torch.compile, CUDA graphs)",
    ]
    if s.tp > 1:
        notes.append(f"TP all-reduce: 2 per layer over {_link(s.gpu)} at {s.gpu.interconnect_bytes_per_s / 1e9:.0f} GB/s")
    if s.pp > 1:
        notes.append(f"pipeline: {s.pp} stages, {NODE_LINK_BYTES_PER_S / 1e9:.1f} GB/s between nodes (ASSUMED)")
    notes.append("unmeasured: constants are public figures, compared with published vLLM runs in "
                 "benchmarks/results/speed_evidence.md")
    return Speed(decode_tokens_per_s=round(decode, 3),
                 prefill_tokens_per_s=round(1.0 / per_token_prefill, 1),
                 load_seconds=round(load, 1),
                 throughput_tokens_per_s=round(s.new_tokens / seconds_per_request, 3),
                 seconds_per_request=round(seconds_per_request, 4),
                 assumptions=tuple(notes))
