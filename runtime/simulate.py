"""Exact GPU tensor-memory peak of a planned ``generate()``, simulated on a CPU with fake CUDA tensors.

The real transformers model is built from the plan's config on the meta device, every parameter and
buffer is swapped for an uninitialised FakeTensor on device ``cuda`` (ties kept), and the planned
workload (prefill of the prompt + decode steps, the plan's batch, dtype and attention) runs through the
real ``model.generate()``. A TorchDispatchMode counts live storage bytes rounded to 512 B as the CUDA
caching allocator does, and records the peak per device, its breakdown (weights / kv / activations) and
where it happened (module path, op, phase). Four CPU-build obstacles are handled:

1. weight init on fake CUDA: build on meta, then swap tensors (no init kernels run);
2. no CUDA DeviceGuard in CPU wheels: a tiny C++ extension registers a no-op guard (compiled once with
   ``torch.utils.cpp_extension.load_inline`` and cached); without a compiler, indexing is rescued by
   flipping the fake device, and the result says so;
3. SDPA on fake CUDA would take the math kernel: it is routed like ``select_sdp_backend`` on an H100
   (cuDNN, flash, memory-efficient), whose meta kernels allocate exactly what the real ones do;
4. ``generate()`` reads data (``all``/``any``/stop checks): a provenance oracle answers from the op that
   produced the tensor (no padding, no early EOS) and raises on anything else.

Several GPUs: every storage is charged to the device of the block that created it (weights and KV by
their block, activations by the executing layer), as accelerate's hooks place them; the hidden-state
copies between devices (B x P x hidden) are not simulated. bitsandbytes and MXFP4/FP8 kernels cannot run
on fake tensors: such plans are refused with a clear error, never approximated.
"""
from __future__ import annotations

import contextlib
import os
import resource
import time
import weakref
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from vplan.planner.errors import SimulationUnsupportedError

from . import _fake_cuda_guard

aten = torch.ops.aten
ALLOC_ROUND = 512  # CUDACachingAllocator kMinBlockSize
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
SIMULATABLE = ("bf16", "fp16", "fp32")
MAX_DECODE_STEPS = 16


def block_bytes(nbytes: int) -> int:
    return 0 if nbytes == 0 else -(-nbytes // ALLOC_ROUND) * ALLOC_ROUND


@dataclass(frozen=True)
class SimResult:
    peak_bytes: int  # largest device peak
    gpu_peak_bytes: dict[str, int]
    breakdown: dict[str, int]  # at the largest device's peak: weights, kv, activations
    where: dict  # module, op, phase, device
    prompt_tokens: int
    new_tokens: int
    batch: int
    attn_implementation: str
    dtype: str
    ops: int
    elapsed_s: float
    max_rss_bytes: int
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


# ------------------------------------------------------------------ model on fake CUDA
def _build(config: dict, dtype: torch.dtype, attn: str, fake: FakeTensorMode):
    import transformers

    cfg = {k: v for k, v in config.items() if k != "quantization_config"}
    conf = transformers.AutoConfig.for_model(**cfg)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(conf, dtype=dtype, attn_implementation=attn)
    model.eval()
    memo: dict[int, torch.Tensor] = {}
    with fake:
        for mod in model.modules():
            for store in (mod._parameters, mod._buffers):
                for k, t in list(store.items()):
                    if t is None:
                        continue
                    if id(t) not in memo:
                        new = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="cuda")
                        if isinstance(t, torch.nn.Parameter):
                            new = torch.nn.Parameter(new, requires_grad=False)
                        memo[id(t)] = new
                    store[k] = memo[id(t)]
    return model, conf


# ------------------------------------------------------------------ SDPA routed like sm90
def _sdpa_sm90(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    low = q.dtype in (torch.float16, torch.bfloat16)
    d_qk, d_v = q.shape[-1], v.shape[-1]
    hq, hk = q.shape[-3], k.shape[-3]
    gqa_ok = hq == hk or enable_gqa
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.where(attn_mask, torch.zeros((), dtype=q.dtype, device=q.device),
                                torch.full((), -float("inf"), dtype=q.dtype, device=q.device))
    s_q, s_k = q.shape[-2], k.shape[-2]
    if low and d_qk <= 128 and d_v <= 128 and d_qk % 8 == 0 and d_v % 8 == 0 and s_k != 1 and gqa_ok:
        return aten._scaled_dot_product_cudnn_attention.default(q, k, v, attn_mask, False, dropout_p, is_causal,
                                                                False, scale=scale)[0]
    if low and attn_mask is None and d_qk == d_v and d_qk <= 256 and gqa_ok and not (is_causal and s_q != s_k):
        return aten._scaled_dot_product_flash_attention.default(q, k, v, dropout_p, is_causal, False, scale=scale)[0]
    if d_qk % 8 == 0 and d_v % 8 == 0 and gqa_ok:
        if attn_mask is not None and attn_mask.stride(-2) % 16 != 0:
            last = attn_mask.shape[-1]
            attn_mask = F.pad(attn_mask, (0, 16 - last % 16))[..., :last]
        if attn_mask is not None:
            attn_mask = attn_mask.expand(q.shape[0], hq, s_q, s_k)
        return aten._scaled_dot_product_efficient_attention.default(q, k, v, attn_mask, False, dropout_p, is_causal,
                                                                    scale=scale)[0]
    return None


class _CudaShim(TorchFunctionMode):
    CPU = torch.device("cpu")

    def __init__(self, guard: bool):
        super().__init__()
        self.flip_index = not guard

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.flip_index and func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            flat, _ = tree_flatten((args, kwargs))
            flipped = [(t, t.fake_device) for t in flat if isinstance(t, FakeTensor) and t.fake_device.type == "cuda"]
            for t, _ in flipped:
                t.fake_device = self.CPU
            try:
                out = func(*args, **kwargs)
            finally:
                for t, d in flipped:
                    t.fake_device = d
            if flipped and isinstance(out, FakeTensor) and out.fake_device.type == "cpu":
                out.fake_device = flipped[0][1]
            return out
        if func is F.scaled_dot_product_attention and isinstance(args[0], FakeTensor):
            names = ["query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"]
            kw = dict(zip(names, args))
            kw.update(kwargs)
            out = _sdpa_sm90(kw["query"], kw["key"], kw["value"], kw.get("attn_mask"), kw.get("dropout_p", 0.0),
                             kw.get("is_causal", False), kw.get("scale"), kw.get("enable_gqa", False))
            if out is not None:
                return out
        return func(*args, **kwargs)


# ------------------------------------------------------------------ generate()'s data-dependent reads
class _Oracle:
    RULES = {"all": True, "any": False}

    def __init__(self, new_tokens: int):
        from torch.utils.weak import WeakIdKeyDictionary

        self.prov = WeakIdKeyDictionary()
        self.new_tokens = new_tokens
        self.stop_checks = 0

    def record(self, func, args, out):
        if isinstance(out, torch.Tensor) and out.numel() <= 64:
            srcs = tuple(self.prov.get(a, "?") if isinstance(a, torch.Tensor) else a for a in args)
            self.prov[out] = (func.overloadpacket.__name__, srcs)

    def __call__(self, t):
        p = self.prov.get(t)
        if p is None:
            raise RuntimeError("simulator: data-dependent read of a tensor with unknown provenance")
        name, srcs = p
        if name in self.RULES:
            return self.RULES[name]
        if name == "eq" and isinstance(srcs[0], tuple) and srcs[0][0] == "max" and srcs[1] == 0:
            self.stop_checks += 1
            return self.stop_checks >= self.new_tokens
        raise RuntimeError(f"simulator: data-dependent read of {p}")


# ------------------------------------------------------------------ live-bytes tracker
class _Tracker(TorchDispatchMode):
    def __init__(self, oracle: _Oracle):
        super().__init__()
        self.oracle = oracle
        self.seen: dict[int, list] = {}
        self.live: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.peak_cats: dict[str, dict[str, int]] = {}
        self.peak_where: dict[str, dict] = {}
        self.cat = "activations"
        self.device = "0"
        self.phase = "inputs"
        self.mod_stack: list[str] = []
        self.ops = 0

    def track(self, t, cat: str | None = None, device: str | None = None):
        if not isinstance(t, torch.Tensor):
            return
        st = t.untyped_storage()
        key = st._cdata
        if key in self.seen:
            return
        nb = block_bytes(st.nbytes())
        dev = device or self.device
        rec = [nb, cat or self.cat, dev]
        self.seen[key] = rec
        self.live[dev] = self.live.get(dev, 0) + nb
        sref = weakref.ref(self)

        def _free(_wr, key=key, rec=rec):
            s = sref()
            if s is not None and s.seen.get(key) is rec:
                s.live[rec[2]] -= rec[0]
                del s.seen[key]

        rec.append(weakref.ref(st, _free))

    def _cats(self, dev: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for nb, cat, d, *_ in self.seen.values():
            if d == dev:
                out[cat] = out.get(cat, 0) + nb
        return out

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (aten._local_scalar_dense.default, aten.is_nonzero.default) and isinstance(args[0], FakeTensor):
            return self.oracle(args[0])
        out = func(*args, **kwargs)
        self.oracle.record(func, args, out)
        for t in tree_flatten(out)[0]:
            self.track(t)
        self.ops += 1
        dev = self.device
        if self.live.get(dev, 0) > self.peak.get(dev, 0):
            self.peak[dev] = self.live[dev]
            self.peak_cats[dev] = self._cats(dev)
            self.peak_where[dev] = {"module": "/".join(self.mod_stack[-3:]), "op": str(func), "phase": self.phase,
                                    "device": dev}
        return out


@contextlib.contextmanager
def _kv_tagging(tr: _Tracker):
    from transformers import cache_utils

    base = getattr(cache_utils, "CacheLayerMixin", object)
    patched = []
    for name in dir(cache_utils):
        cls = getattr(cache_utils, name)
        if isinstance(cls, type) and "update" in cls.__dict__ and issubclass(cls, base):
            orig = cls.__dict__["update"]

            def upd(self, *a, __orig=orig, **k):
                prev, tr.cat = tr.cat, "kv"
                try:
                    return __orig(self, *a, **k)
                finally:
                    tr.cat = prev

            cls.update = upd
            patched.append((cls, orig))
    try:
        yield
    finally:
        for cls, orig in patched:
            cls.update = orig


@contextlib.contextmanager
def _placement_hooks(tr: _Tracker, model, device_of_block: dict[str, str]):
    """Module stack for `where`, and the current device = the device of the executing block."""
    names = {id(m): n for n, m in model.named_modules()}
    handles = []

    def pre(m, _inp):
        tr.mod_stack.append(type(m).__name__)
        dev = device_of_block.get(names.get(id(m), ""))
        if dev is not None:
            m._vplan_prev_dev = tr.device
            tr.device = dev

    def post(m, _inp, _out):
        if tr.mod_stack:
            tr.mod_stack.pop()
        prev = getattr(m, "_vplan_prev_dev", None)
        if prev is not None:
            tr.device = prev
            del m._vplan_prev_dev

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _h100_properties():
    """Kernel choices that ask the device (MoE grouped_mm needs CC >= 8.0) see an H100 (sm90)."""
    orig = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = lambda device=None: (9, 0)
    try:
        yield
    finally:
        torch.cuda.get_device_capability = orig


def _block_device(name: str, device_map: dict[str, str]) -> str | None:
    best = None
    for block, dev in device_map.items():
        if name == block or name.startswith(block + "."):
            if best is None or len(block) > len(best[0]):
                best = (block, dev)
    return str(best[1]) if best else None


def simulate(config: dict, *, batch: int, prompt_tokens: int, new_tokens: int, dtype: str = "bfloat16",
             attn_implementation: str = "sdpa", device_map: dict[str, str] | None = None,
             precision: str = "bf16") -> SimResult:
    """Run the real generate() on fake CUDA tensors and return its exact tensor-memory peak per device."""
    notes: list[str] = []
    q = (config.get("quantization_config") or {}).get("quant_method")
    if precision not in SIMULATABLE:
        raise SimulationUnsupportedError(
            f"the simulator cannot represent {precision} weights (bitsandbytes/MXFP4/FP8 kernels do not run on fake "
            "tensors); plan bf16 to simulate the unquantized model, or measure on a GPU with benchmarks/gpu_runtime.py")
    if q:
        notes.append(f"checkpoint quantization {q!r} dropped: simulated the {precision} (dequantized) model")
    if config.get("model_type") == "gpt_oss" and attn_implementation != "eager":
        notes.append("gpt-oss runs eager attention in transformers (attention sinks): simulated eager")
        attn_implementation = "eager"
    devs = {str(v) for v in (device_map or {}).values()}
    if devs & {"cpu", "disk"}:
        notes.append("cpu/disk-offloaded blocks are executed on GPU 0 in the runtime; simulated as resident on GPU 0")
    dmap = {k: ("0" if str(v) in ("cpu", "disk") else str(v)) for k, v in (device_map or {}).items()}
    guard = _fake_cuda_guard.install()
    if not guard:
        notes.append("no C++ compiler: fake CUDA device guard not installed, indexing rescued in Python")
    t0 = time.perf_counter()
    fake = FakeTensorMode(allow_non_fake_inputs=False)
    model, conf = _build(config, DTYPES[dtype], attn_implementation, fake)
    tr = _Tracker(_Oracle(new_tokens))
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        tr.track(p, "weights", _block_device(name, dmap) or "0")
    for d in list(tr.live):
        tr.peak[d] = tr.live[d]
    step = {"n": 0}

    def phase_hook(_m, _a, _k):
        tr.phase = "prefill" if step["n"] == 0 else f"decode{step['n']}"
        step["n"] += 1

    h = model.register_forward_pre_hook(phase_hook, with_kwargs=True)
    try:
        with fake, _CudaShim(guard), _h100_properties(), tr, _kv_tagging(tr), _placement_hooks(tr, model, dmap), \
                torch.no_grad():
            ids = torch.randint(0, conf.vocab_size, (batch, prompt_tokens), device="cuda")
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None, use_cache=True)
    finally:
        h.remove()
    elapsed = time.perf_counter() - t0
    top = max(tr.peak, key=lambda d: tr.peak[d])
    cats = tr.peak_cats.get(top) or {}
    breakdown = {"weights": cats.get("weights", 0), "kv": cats.get("kv", 0), "activations": cats.get("activations", 0)}
    return SimResult(
        peak_bytes=tr.peak[top], gpu_peak_bytes=dict(sorted(tr.peak.items())), breakdown=breakdown,
        where=tr.peak_where.get(top, {}), prompt_tokens=prompt_tokens, new_tokens=new_tokens, batch=batch,
        attn_implementation=attn_implementation, dtype=dtype, ops=tr.ops, elapsed_s=round(elapsed, 2),
        max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, notes=tuple(notes),
    )


def simulate_plan(plan: dict) -> SimResult:
    """Simulate a plan file's workload: its config, precision, dtype, device map, batch and prompt."""
    wl = plan["workload"]
    steps = min(int(wl.get("max_new_tokens", MAX_DECODE_STEPS)), MAX_DECODE_STEPS)
    res = simulate(plan["config"], batch=int(wl["batch"]), prompt_tokens=int(wl["prompt_tokens"]), new_tokens=steps,
                   dtype=plan.get("dtype", "bfloat16"), attn_implementation=wl.get("attn_implementation", "sdpa"),
                   device_map=plan.get("device_map") if int(plan.get("gpus", 1)) > 1 else None,
                   precision=plan.get("precision", "bf16"))
    if steps < int(wl.get("max_new_tokens", steps)):
        note = (f"simulated {steps} of {wl['max_new_tokens']} decode steps: the dense peak is in prefill; later "
                "steps only grow the KV cache, which the planner sizes for the full context")
        res = SimResult(**{**res.__dict__, "notes": res.notes + (note,)})
    return res
