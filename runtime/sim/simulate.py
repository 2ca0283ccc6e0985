"""Exact GPU tensor-memory peak of a planned ``generate()``, simulated on a CPU with fake CUDA tensors.

The real transformers model is built from the config on the meta device (no init kernels, ties kept), of the class
the runtime loads (``runtime/transformers/load.py auto_model_class``: the whole multimodal model, or Llama 4's text
model) and with ``lm_head`` tied as ``from_pretrained`` ties it (planner/model/multimodal.py ``with_loaded_tie``),
every parameter and buffer is swapped for an uninitialised FakeTensor on its mapped fake device
(``cuda:N``), and the workload (prefill of the prompt + decode steps, batch, dtype, attention) runs through
the real ``model.generate()``. A TorchDispatchMode counts live storage bytes per device, rounded to 512 B as
the CUDA caching allocator does (``sim_track``). Four CPU-build obstacles are handled:

1. weight init on fake CUDA: build on meta, then swap tensors (``build_fake_model``);
2. no CUDA DeviceGuard in CPU wheels: a tiny C++ extension registers a no-op one (``_fake_cuda_guard``,
   compiled once and cached; needs a C++ compiler and ``ninja``). Without it a Python-only index fallback
   is used and the result's notes say so;
3. SDPA would take the math kernel on fake CUDA: routed like an H100 instead (``sim_cuda``);
4. ``generate()``'s data-dependent reads are answered by a provenance oracle (``sim_track``).

Several GPUs: placement and input moves follow accelerate's ``dispatch_model`` (``sim_place``).
Precisions whose kernels cannot run on fake tensors (bitsandbytes, MXFP4, FP8, GPTQ/AWQ, ...) raise
``SimulationUnsupportedError``; MXFP4/FP8 checkpoints are simulated only as the bf16 model transformers
dequantizes them to, when bf16 is asked for, and the result says so.
"""
from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import asdict, dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from vplan.planner.errors import SimulationUnsupportedError
from vplan.planner.model.multimodal import with_loaded_tie
from vplan.planner.plan import Plan

from vplan.runtime.sim import guard as _fake_cuda_guard
from vplan.runtime.sim.cuda import CudaShim, h100_properties
from vplan.runtime.sim.place import OFFLOAD, dispatch_hooks, main_gpu, mapped_device, normalize_device_map, torch_device
from vplan.runtime.sim.track import LiveBytesTracker, ProvenanceOracle, kv_tagging
from vplan.runtime.transformers.load import attention_to_run, auto_model_class

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
PRECISION_OF_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
DEQUANTIZED_AS_BF16 = ("mxfp4", "fp8")  # transformers dequantizes these checkpoints to bf16 without their kernels
MAX_DECODE_STEPS = 16


@dataclass(frozen=True)
class SimResult:
    peak_bytes: int  # the largest GPU peak
    gpu_peak_bytes: dict[str, int]  # per GPU ('0', '1', ...)
    breakdown: dict[str, int]  # at the largest GPU's peak: weights, kv, activations
    gpu_breakdown: dict[str, dict[str, int]]  # per GPU, at that GPU's own peak
    where: dict  # module, op, phase ('prefill' | 'decodeN'), device
    elapsed_s: float
    batch: int
    prompt_tokens: int
    new_tokens: int
    attn_implementation: str
    dtype: str
    ops: int
    max_rss_bytes: int
    host_weight_bytes: int = 0  # weights kept in host memory (cpu/disk entries of the device map)
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SimResult":
        return cls(**{**d, "notes": tuple(d.get("notes", ()))})


def simulatable_config(config: dict, *, dtype: str, precision: str | None = None) -> tuple[dict, list[str]]:
    """The config the simulator builds (quantization dropped where transformers dequantizes), plus notes.
    Raises SimulationUnsupportedError for anything whose kernels cannot run on fake tensors."""
    if dtype not in DTYPES:
        raise SimulationUnsupportedError(f"dtype {dtype!r} cannot be simulated; use one of {sorted(DTYPES)}")
    precision = precision or PRECISION_OF_DTYPE[dtype]
    if precision not in PRECISION_OF_DTYPE.values():
        raise SimulationUnsupportedError(
            f"the simulator cannot represent {precision} weights (bitsandbytes int8/nf4, MXFP4 and FP8 kernels do "
            "not run on fake tensors); simulate the bf16 plan instead, or measure on a GPU "
            "(benchmarks/gpu_runtime.py)")
    q = config.get("quantization_config") or {}
    method = str(q.get("quant_method") or ("bitsandbytes" if q.get("load_in_4bit") or q.get("load_in_8bit") else "")
                 ).lower()
    notes: list[str] = []
    if method:
        if method not in DEQUANTIZED_AS_BF16:
            raise SimulationUnsupportedError(
                f"the simulator cannot represent this {method}-quantized checkpoint (its kernels do not run on fake "
                "tensors and transformers does not dequantize it); measure on a GPU (benchmarks/gpu_runtime.py)")
        if dtype != "bfloat16":
            raise SimulationUnsupportedError(
                f"{method} checkpoints are simulated only as the bf16 model transformers dequantizes them to; "
                f"ask for dtype bfloat16, not {dtype}")
        notes.append(f"{method} quantization_config dropped: simulated the bf16-dequantized model, not {method} kernels")
        config = {k: v for k, v in config.items() if k != "quantization_config"}
    return config, notes


def build_fake_model(config: dict, *, dtype: torch.dtype, attn_implementation: str, fake: FakeTensorMode,
                     device_map: dict[str, str] | None = None):
    """transformers model from ``config`` on meta, then every tensor swapped for a fake one on its mapped
    device (ties kept: a shared tensor is created once, on the device of its first owner)."""
    import transformers

    dmap = device_map or {}
    default = main_gpu(dmap)
    conf = transformers.AutoConfig.for_model(**with_loaded_tie(config, transformers.__version__))
    with torch.device("meta"):
        model = auto_model_class(conf.model_type).from_config(conf, dtype=dtype,
                                                              attn_implementation=attn_implementation)
    model.eval()
    memo: dict[int, torch.Tensor] = {}
    with fake:
        for mname, mod in model.named_modules():
            for store in (mod._parameters, mod._buffers):
                for k, t in list(store.items()):
                    if t is None:
                        continue
                    if id(t) not in memo:
                        dev = torch_device(mapped_device(f"{mname}.{k}" if mname else k, dmap, default))
                        new = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=dev)
                        memo[id(t)] = torch.nn.Parameter(new, requires_grad=False) \
                            if isinstance(t, torch.nn.Parameter) else new
                    store[k] = memo[id(t)]
    return model, conf


@contextlib.contextmanager
def _phase_and_module_hooks(model, tracker: LiveBytesTracker):
    """tracker.phase = prefill / decodeN per top-level forward; tracker.module_stack for `where`."""
    from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

    step = {"n": 0}

    def phase(_m, _a, _k):
        tracker.phase = "prefill" if step["n"] == 0 else f"decode{step['n']}"
        step["n"] += 1

    def push(m, _inp):
        tracker.module_stack.append(type(m).__name__)

    def pop(_m, _inp, _out):
        if tracker.module_stack:
            tracker.module_stack.pop()

    hs = [model.register_forward_pre_hook(phase, with_kwargs=True), register_module_forward_pre_hook(push),
          register_module_forward_hook(pop)]
    try:
        yield
    finally:
        for h in hs:
            h.remove()


def run_generate(model, tracker: LiveBytesTracker, *, batch: int, prompt_tokens: int, new_tokens: int,
                 vocab_size: int, device: torch.device) -> tuple[int, ...]:
    """Greedy ``generate()`` of exactly ``new_tokens`` tokens after a prompt of ``prompt_tokens`` (no padding)
    with ``tracker`` active; works on real and fake models. Returns the output shape."""
    with tracker, kv_tagging(tracker), _phase_and_module_hooks(model, tracker), torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        ids = torch.randint(0, vocab_size, (batch, prompt_tokens), generator=gen).to(device) \
            if device.type == "cpu" and tracker.oracle is None else \
            torch.randint(0, vocab_size, (batch, prompt_tokens), device=device)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0, eos_token_id=None,
                             use_cache=True)
        return tuple(out.shape)


def simulate(config: dict, *, batch: int, prompt_tokens: int, new_tokens: int, dtype: str = "bfloat16",
             attn_implementation: str = "sdpa", device_map: dict | None = None,
             precision: str | None = None) -> SimResult:
    """Run the real ``generate()`` on fake CUDA tensors; return its exact tensor-memory peak per GPU."""
    t0 = time.perf_counter()
    config, notes = simulatable_config(config, dtype=dtype, precision=precision)
    if attn_implementation not in ("sdpa", "eager"):
        raise SimulationUnsupportedError(f"attention {attn_implementation!r} cannot be simulated; use sdpa or eager")
    attn_implementation, why = attention_to_run(config, attn_implementation)
    if why:
        notes.append(f"{why}: simulated eager")
    dmap = normalize_device_map(device_map)
    if any(d in OFFLOAD for d in dmap.values()):
        notes.append("cpu/disk blocks: weights in host memory, copied to the main GPU for their forward "
                     "(accelerate offload hooks)")
    guard = _fake_cuda_guard.install()
    if not guard:
        notes.append("APPROXIMATE: no C++ compiler/ninja, fake CUDA device guard not built; Python index fallback "
                     "used (install ninja and a compiler for the exact simulator)")
    fake = FakeTensorMode(allow_non_fake_inputs=False)
    model, conf = build_fake_model(config, dtype=DTYPES[dtype], attn_implementation=attn_implementation, fake=fake,
                                   device_map=dmap)
    tracker = LiveBytesTracker(ProvenanceOracle(new_tokens))
    for p in list(model.parameters()) + list(model.buffers()):
        tracker.track(p, "weights")
    tracker.mark_baseline()
    first = next(model.parameters()).device
    place = dispatch_hooks(model, dmap, tracker, notes) if dmap else contextlib.nullcontext()
    with fake, CudaShim(guard), h100_properties(), place:
        run_generate(model, tracker, batch=batch, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
                     vocab_size=conf.get_text_config().vocab_size, device=first if first.type == "cuda" else torch.device("cuda:0"))
    gpus = {d: b for d, b in tracker.peak.items() if d.isdigit()}
    top = max(gpus, key=lambda d: (gpus[d], -int(d)))
    per = {d: {c: tracker.peak_cats.get(d, {}).get(c, 0) for c in ("weights", "kv", "activations")}
           for d in sorted(gpus, key=int)}
    return SimResult(
        peak_bytes=gpus[top], gpu_peak_bytes={d: gpus[d] for d in per}, breakdown=per[top], gpu_breakdown=per,
        where=tracker.peak_where.get(top, {}),
        elapsed_s=round(time.perf_counter() - t0, 2), batch=batch, prompt_tokens=prompt_tokens, new_tokens=new_tokens,
        attn_implementation=attn_implementation, dtype=dtype, ops=tracker.ops,
        max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        host_weight_bytes=tracker.peak.get("cpu", 0), notes=tuple(dict.fromkeys(notes)))


def simulate_plan(plan: Plan) -> SimResult:
    """Simulate a plan's workload (config, precision, dtype, device map, prompt, batch, attention) with at most
    16 decode steps."""
    wl = plan.workload
    if plan.engine != "transformers":
        raise SimulationUnsupportedError(f"the simulator runs transformers generate(); this plan's engine is {plan.engine}")
    wanted = wl.max_new_tokens
    steps = max(1, min(wanted, MAX_DECODE_STEPS))
    res = simulate(plan.config, batch=wl.batch, prompt_tokens=wl.prompt_tokens, new_tokens=steps, dtype=plan.dtype,
                   attn_implementation=wl.attn_implementation, device_map=plan.device_map or None,
                   precision=plan.precision)
    if steps < wanted:
        note = (f"simulated {steps} of {wanted} decode steps: dense models peak in prefill and MoE decode peaks "
                "repeat every step; later steps only grow the KV cache, which the planner sizes for the full context")
        res = SimResult(**{**res.__dict__, "notes": res.notes + (note,)})
    return res
