"""What vLLM 0.32 leaves for the KV pool on one GPU, and its defaults there.

v1/worker/gpu_worker.py:634-807 (determine_available_memory), in order: the CUDA context, NCCL communicators and
custom all-reduce buffers are created before the init snapshot, outside the budget (the startup check,
v1/worker/utils.py:716-771, needs free >= ceil(total x gpu_memory_utilization)); then, inside
``requested = ceil(total x gpu_memory_utilization)``: the weights, the profiling run's torch peak (a dummy forward
of max_num_batched_tokens tokens with attention skipped, then the sampler on min(max_num_batched_tokens,
max_num_seqs) rows; v1/worker/gpu/model_runner.py:991-1036), memory outside torch that grew since the snapshot
(cuBLAS/cuBLASLt handles, kernels loaded), and the CUDA-graph estimate (profiled before KV sizing,
v1/worker/gpu/cudagraph_utils.py:873-977; VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1). The rest is the
KV pool. ``total`` is cudaMemGetInfo's total, i.e. what torch reports as total_memory (GpuSpec.memory_bytes).

The three runtime figures below are UNMEASURED here (no GPU was lent to the session that wrote this): each
constant names the public figures it was set from, and plans repeat them as assumptions. benchmarks/gpu_runtime.py
is where a GPU measurement replaces them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from vplan.planner.hardware.gpus import GpuSpec
from vplan.planner.memory import vllm as vm
from vplan.planner.memory import vllm_layout as lay
from vplan.planner.memory.overhead import CUDA_CONTEXT_BYTES
from vplan.planner.model import ModelSpec
from vplan.planner.units import GIB, MIB

DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # config/cache.py:102
GPU_BLOCK_SIZE = 16  # config/cache.py:72; FLASH_ATTN, TRITON_ATTN and TRITON/FA MLA take MultipleOf(16)
FLASHINFER_MLA_BLOCK_SIZE = 64  # Blackwell MLA backend takes [32, 64] (v1/attention/backends/mla/flashinfer_mla.py:204)
# NCCL communicators (TP, PP and world groups) + custom all-reduce IPC buffers, created before the snapshot.
# UNMEASURED: a Dec-2024 vLLM log (PR #10511) shows non-torch memory growing 1.79 -> 3.58 GiB from TP 1 to TP 2 on
# H100, which then also counted cuBLAS and the context; 1 GiB per worker is assumed when world size > 1.
NCCL_BYTES = 1 * GIB
# Growth outside torch after the snapshot (cuBLAS/cuBLASLt workspaces, kernels loaded during the profile run).
# UNMEASURED: vLLM logs report "non_torch_memory takes 0.16-0.20 GiB" (PR #12126, PR #14447 logs).
NON_TORCH_GROWTH_BYTES = 256 * MIB
# CUDA-graph estimate at the default capture sizes (51 sizes up to 512 with max_num_seqs 256).
# UNMEASURED: public 0.2x-0.3x logs say "Estimated CUDA graph memory: 0.36 GiB" (16 graphs) and 0.44 GiB
# (51 graphs, largest 512); 512 MiB is assumed.
CUDA_GRAPH_BYTES = 512 * MIB
# The sampler's dummy run holds the gathered logits in fp32 and about two more fp32 copies (softmax, top-k/p).
SAMPLER_FP32_COPIES = 3


def block_size(spec: ModelSpec, gpu: GpuSpec) -> int:
    """The block size vLLM picks on this GPU (platforms/cuda.py backend priority, interface.py:750-794)."""
    if vm.is_mla(spec) and gpu.compute_capability >= (10, 0):
        return FLASHINFER_MLA_BLOCK_SIZE
    return GPU_BLOCK_SIZE


def batch_defaults(gpu: GpuSpec, max_model_len: int) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) of `vllm serve` (engine/arg_utils.py:2894-2985, 3097-3162)."""
    if gpu.memory_bytes >= 160 * GIB:
        mnbt, mns = 16384, 1024
    elif gpu.memory_bytes >= 70 * GIB and "a100" not in gpu.name.lower():
        mnbt, mns = 8192, 1024
    else:
        mnbt, mns = 2048, 256
    mnbt = min(mns * max_model_len, mnbt)
    return mnbt, min(mns, mnbt)


def requested_bytes(gpu: GpuSpec, utilization: float) -> int:
    """v1/worker/utils.py::request_memory."""
    return math.ceil(gpu.memory_bytes * utilization)


def outside_budget_bytes(world_size: int) -> int:
    """Memory taken before the snapshot: the CUDA context, and NCCL when there is more than one worker."""
    return CUDA_CONTEXT_BYTES + (NCCL_BYTES if world_size > 1 else 0)


def profile_peak_bytes(spec: ModelSpec, *, tp: int, pp: int, pp_rank: int, max_num_batched_tokens: int,
                       max_num_seqs: int, act_bytes: int = 2) -> int:
    """The profiling run's torch peak beyond the weights on one rank: hidden-size buffers of the token batch, the
    largest intermediate of one layer on this stage, and (last stage) the sampler's logits. UNMEASURED shape:
    for Llama-3-8B at 8192 tokens it gives 1.27 GiB where a public log (PR #10511) reports 1.26 GiB."""
    c = spec.config
    fam = lay.family(c)
    t, h = max_num_batched_tokens, c["hidden_size"]
    layers = vm.stage_layers(spec, pp=pp, pp_rank=pp_rank)
    widest = max((_layer_intermediate(c, fam, i, tp, t) for i in {lay.moe_layer(c, i): i for i in layers}.values()),
                 default=0)
    peak = 4 * t * h * act_bytes + widest * act_bytes
    if pp_rank == pp - 1:
        rows = min(t, max_num_seqs)
        vocab = lay.round_up(c["vocab_size"], lay.VOCAB_PADDING)
        peak += rows * vocab * 4 * SAMPLER_FP32_COPIES + rows * (vocab // tp) * act_bytes
    return peak


def _layer_intermediate(c: dict, fam: str, i: int, tp: int, t: int) -> int:
    """Elements of the widest activation one layer holds for t tokens on a rank."""
    if fam in lay.DEEPSEEK:
        lh = c["num_attention_heads"] // tp
        qk, v = c["qk_nope_head_dim"] + c["qk_rope_head_dim"], c["v_head_dim"]
        att = t * lh * (2 * qk + c["qk_nope_head_dim"] + v)
        inter, topk, experts = c.get("moe_intermediate_size"), (c.get("num_experts_per_tok") or 1), c.get("n_routed_experts")
    else:
        q, kv = lay.qkv_heads(c, tp)
        att = t * (2 * q + 2 * kv) * lay.head_dim(c)
        experts = lay.get(c, "num_local_experts", "num_experts")
        inter = c["moe_intermediate_size"] if fam == "qwen3_moe" else c.get("intermediate_size")
        topk = lay.get(c, "num_experts_per_tok", "experts_per_token", default=1)
    if lay.moe_layer(c, i):  # fused_moe: intermediate caches [t, topk, 2I], [t*topk, I], [t, topk, H] + fp32 router logits
        ip = inter // tp
        return max(att, t * topk * (3 * ip + c["hidden_size"]) + 2 * t * experts)
    return max(att, t * 3 * (c["intermediate_size"] // tp))


@dataclass(frozen=True)
class RankBudget:
    """One GPU worker: the bytes vLLM plans there."""

    capacity_bytes: int  # what torch can allocate (cudaMemGetInfo total)
    requested_bytes: int  # ceil(capacity x gpu_memory_utilization)
    outside_bytes: int  # CUDA context + NCCL, before the snapshot (must fit in capacity - requested)
    weights_bytes: int
    profile_peak_bytes: int
    non_torch_bytes: int  # growth after the snapshot
    cuda_graph_bytes: int

    @property
    def available_kv_bytes(self) -> int:
        """gpu_worker.py:740-744: requested - non-KV memory - the CUDA-graph estimate."""
        return (self.requested_bytes - self.weights_bytes - self.profile_peak_bytes - self.non_torch_bytes
                - self.cuda_graph_bytes)

    @property
    def starts(self) -> bool:
        """The startup check: free memory after the context and NCCL covers the requested budget."""
        return self.capacity_bytes - self.outside_bytes >= self.requested_bytes


def rank_budget(gpu: GpuSpec, *, weights_bytes: int, profile_peak_bytes: int, world_size: int,
                utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION, enforce_eager: bool = False) -> RankBudget:
    return RankBudget(gpu.memory_bytes, requested_bytes(gpu, utilization), outside_budget_bytes(world_size),
                      weights_bytes, profile_peak_bytes, NON_TORCH_GROWTH_BYTES, 0 if enforce_eager else CUDA_GRAPH_BYTES)


def assumptions(world_size: int) -> tuple[str, ...]:
    """The unmeasured figures a vLLM plan rests on, in words (shown with every plan)."""
    out = [f"vLLM {vm.MODELLED_VERSION}: KV pool = ceil(GPU total x gpu_memory_utilization) - weights - profiling peak"
           f" - {NON_TORCH_GROWTH_BYTES // MIB} MiB non-torch growth - {CUDA_GRAPH_BYTES // MIB} MiB CUDA graphs "
           "(the last two UNMEASURED, from public vLLM logs)",
           f"CUDA context {CUDA_CONTEXT_BYTES // MIB} MiB" + (f" + NCCL {NCCL_BYTES // MIB} MiB" if world_size > 1 else "")
           + " per GPU outside the budget (UNMEASURED)"]
    return tuple(out)
