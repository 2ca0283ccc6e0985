"""The precision policy: which precisions a model may take on a device, in what order, and why not.

One place decides; the search, ``--precision`` and the hardware matrix ask here, and the memory model is never
asked for a precision the policy refused (a refused precision comes back as a ``Rejection.PRECISION`` line with
the reason, never as an internal error). Names:

- compute precisions ``bf16`` / ``fp16`` / ``fp32``: every parameter at that width (fp16 keeps transformers'
  ``_keep_in_fp32_modules`` in fp32);
- on-load quantization of a plain checkpoint: ``fp8`` (fine-grained, needs compute capability >= 8.9),
  ``int8`` (bitsandbytes LLM.int8, outlier decomposition at the default threshold 6.0), ``int8-nodecomp``
  (the same int8 weights with ``llm_int8_threshold=0``: no outlier decomposition, faster, less accurate; offered
  beside the choice, taken only when asked for), ``nf4`` (bitsandbytes 4-bit);
- a pre-quantized checkpoint kept as stored: ``mxfp4`` (gpt-oss), ``fp8``, ``gptq-int4``/``gptq-int8``,
  ``awq-int4``, ``bnb-int8``/``bnb-nf4``. MXFP4 and FP8 checkpoints load dequantized to the compute
  precision where they cannot stay as stored.

Default order: the checkpoint's own format where the device keeps it, then the compute precision (bf16, or fp16
on GPUs without bf16), then fp8, int8, nf4. fp16 on a bf16 GPU, fp32 and int8-nodecomp are taken only when asked
for.
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.errors import UsageError
from vplan.planner.hardware.gpus import GpuSpec
from vplan.planner.memory.weights import PRECISIONS
from vplan.planner.model import ModelSpec
from vplan.planner.model.behaviours import behaviour, mxfp4_needs, version_text
from vplan.planner.plan.contract import Quantization

DTYPE_OF = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
FP8_MIN_CC = (8, 9)  # FP8 tensor cores (Ada, Hopper): below this vLLM runs fp8 weight-only through Marlin
BNB = ("int8", "nf4")  # the on-load bitsandbytes quantizations of the default ladder
NODECOMP = "int8-nodecomp"  # LLM.int8 without outlier decomposition: int8's bytes, llm_int8_threshold=0
BNB_ALL = (*BNB, NODECOMP)
NAMES = (*PRECISIONS, NODECOMP)  # every name --precision accepts
# Quality order: a higher precision is preferred whenever it fits. Without outlier decomposition int8 loses
# accuracy from ~6.7B parameters on (LLM.int8 paper, Dettmers et al. 2022, figure 1 and section 4): below int8.
QUALITY = {"fp32": 0, "bf16": 1, "fp16": 1, "mxfp4": 1, "fp8": 2, "int8": 3, "bnb-int8": 3, "gptq-int8": 3,
           NODECOMP: 4, "gptq-int4": 4, "awq-int4": 4, "nf4": 5, "bnb-nf4": 5}
# Measured (benchmarks/evidence, bitsandbytes 0.45): threshold 0 decodes 1.6x (H100, E0076 vs E0077), 2.0x (RTX
# 4090, E0033 vs E0035) and 1.85x (T4, E0006 vs E0008) faster than the default LLM.int8.
NODECOMP_OFFER = ("int8 without outlier decomposition (llm_int8_threshold=0): the same memory as int8 and about "
                  "1.6-2x its decode speed, but outlier features are quantized too, which costs accuracy on models "
                  "above ~6.7B parameters; ask for it with --precision int8-nodecomp")
NODECOMP_CONDITION = ("int8-nodecomp quantizes outlier features too (llm_int8_threshold=0): check the model's "
                      "accuracy on your task against int8")


def memory_precision(precision: str) -> str:
    """The precision whose bytes the memory model counts (int8-nodecomp holds int8's)."""
    return "int8" if precision == NODECOMP else precision


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    ok: bool  # the device can hold and run the model in this precision
    why_not: str = ""  # not ok: why; ok but not default: what unlocks it
    default: bool = True  # the search may choose it unasked (fp16 on bf16 GPUs and fp32 only when asked)
    considered: bool = True  # part of the usual ladder (native, compute, fp8, int8, nf4): shown when refused


def compute_precision(gpu: GpuSpec | None) -> str:
    """The unquantized precision a device computes in: bf16 where supported, else fp16; CPU: bf16."""
    return "bf16" if gpu is None or gpu.bf16 else "fp16"


def checkpoint_method(spec: ModelSpec) -> str | None:
    return (spec.checkpoint_quant or {}).get("method")


def native_precision(spec: ModelSpec) -> str | None:
    """The name of the checkpoint's own stored format, or None for a plain checkpoint."""
    q = spec.checkpoint_quant or {}
    method = q.get("method")
    if method in ("mxfp4", "fp8"):
        return method
    if method in ("gptq", "awq"):
        return f"{method}-int{q.get('bits', 4)}"
    if method == "bitsandbytes":
        return "bnb-nf4" if q.get("load_in_4bit") else "bnb-int8"
    return None


def choices(spec: ModelSpec, gpu: GpuSpec | None, *, mxfp4_kernels: bool) -> list[PrecisionChoice]:
    """Every precision vplan knows, for this model on this device (None: CPU), best first, each allowed or not.

    ``mxfp4_kernels``: whether the nodes are known to have the MXFP4 kernels transformers needs (`kernels`
    in its supported range and triton >= 3.4): stated by the user or found on this machine."""
    where = gpu.name if gpu else "CPU"
    native = native_precision(spec)
    method = checkpoint_method(spec)
    base = compute_precision(gpu)
    out: list[PrecisionChoice] = []

    def add(p: str, ok: bool, why: str = "", default: bool = True, considered: bool = True):
        if all(c.precision != p for c in out):
            out.append(PrecisionChoice(p, ok, why, default, considered))

    if native:
        ok, why = _native_ok(spec, native, gpu)
        if ok and native == "mxfp4" and not mxfp4_kernels:
            add(native, True, mxfp4_unverified(spec.transformers), default=False)
        else:
            add(native, ok, why)
    prequant_fixed = method is not None and method not in ("mxfp4", "fp8")
    requant = f"a pre-quantized ({native}) checkpoint cannot be re-quantized on load"
    if prequant_fixed:
        add(base, False, f"a {native} checkpoint loads only as stored (transformers does not dequantize it)")
    else:
        add(base, True)
    if base == "bf16":
        add("fp16", not prequant_fixed, requant, default=False, considered=False)
    else:
        add("bf16", False, f"{where} has no bf16 (compute capability "
                           f"{'.'.join(map(str, gpu.compute_capability)) if gpu else '?'}): fp16")
    add("fp32", not prequant_fixed, requant, default=False, considered=False)
    if method is None:
        add("fp8", *_fp8_ok(spec, gpu))
        for p in BNB:
            add(p, True)
        add(NODECOMP, True, NODECOMP_OFFER, default=False)
    else:
        for p in ("fp8", *BNB):
            add(p, False, requant)
        add(NODECOMP, False, requant, considered=False)
    for p in PRECISIONS:
        if p == "mxfp4":
            add(p, False, "only MXFP4 checkpoints (gpt-oss) load as mxfp4", considered=False)
        elif p.startswith(("gptq", "awq", "bnb")):
            add(p, False, f"{p} is the stored format of pre-quantized checkpoints; this one is "
                          f"{native or 'not quantized'}", considered=False)
    return out


def mxfp4_unverified(transformers: str) -> str:
    return (f"needs {mxfp4_needs(transformers)} on the nodes, which vplan cannot see from here: pass --mxfp4-kernels "
            "(or mxfp4_kernels = true in the cluster profile) if they have them; without them transformers "
            "dequantizes to bf16 while loading")


def _native_ok(spec: ModelSpec, native: str, gpu: GpuSpec | None) -> tuple[bool, str]:
    if native == "mxfp4":
        if gpu is None:
            return False, "MXFP4 stays MXFP4 only on a CUDA GPU; on CPU it loads as bf16"
        min_cc = behaviour("mxfp4_requirements", spec.transformers)["min_cc"]
        if gpu.compute_capability < min_cc:
            return False, f"MXFP4 kernels need compute capability >= {version_text(min_cc)}; {gpu.name} has " \
                          f"{version_text(gpu.compute_capability)}: loads as bf16"
        return True, ""
    if native == "fp8":
        return _fp8_ok(spec, gpu)
    if native.startswith(("gptq", "awq")) and gpu is None:
        return False, f"{native} kernels need a CUDA GPU"
    return True, ""


def _fp8_ok(spec: ModelSpec, gpu: GpuSpec | None) -> tuple[bool, str]:
    min_cc = behaviour("fp8_min_cc", spec.transformers)
    if gpu is None or gpu.compute_capability < min_cc:
        where = gpu.name if gpu else "CPU"
        return False, f"fp8 weights need compute capability >= {version_text(min_cc)} (Ada/Hopper); {where} has none"
    if behaviour("fp8_rejects_biased_experts", spec.transformers) and any(b.expert_bias_params for b in spec.blocks):
        return False, "transformers' FP8Experts does not support biased experts (gpt-oss): use mxfp4 or bf16"
    return True, ""


@dataclass(frozen=True)
class Ladder:
    """What the search does with each precision on one device."""

    tried: tuple[str, ...]  # eligible to be chosen, best first
    shown: tuple[PrecisionChoice, ...]  # evaluated as alternatives only, with what unlocks them (mxfp4 unverified)
    refused: tuple[PrecisionChoice, ...]  # of the usual ladder, what this device cannot take, with why


def ladder(spec: ModelSpec, gpu: GpuSpec | None, *, forced: str | None, mxfp4_kernels: bool) -> Ladder:
    """The precisions the search tries on ``gpu``; ``forced`` (--precision) must be known and possible."""
    cs = choices(spec, gpu, mxfp4_kernels=mxfp4_kernels)
    if forced:
        want = forced.strip().lower()
        if want not in NAMES:
            four = " (4-bit quantization on load is nf4)" if "4" in want else ""
            raise UsageError(f"unknown precision {forced!r} (--precision): use one of {', '.join(NAMES)}{four}")
        c = next(c for c in cs if c.precision == want)
        if not c.ok:
            raise UsageError(f"--precision {want} is not possible for {spec.model_id} on "
                             f"{gpu.name if gpu else 'CPU'}: {c.why_not}")
        return Ladder((want,), (), ())
    return Ladder(tuple(c.precision for c in cs if c.ok and c.default),
                  tuple(c for c in cs if c.ok and not c.default and c.considered),
                  tuple(c for c in cs if not c.ok and c.considered))


def dtype_for(precision: str, gpu: GpuSpec | None) -> str:
    """The compute dtype handed to from_pretrained."""
    if precision in DTYPE_OF:
        return DTYPE_OF[precision]
    return DTYPE_OF[compute_precision(gpu)]


def quantization_for(spec: ModelSpec, precision: str, *, offloaded: bool, dtype: str) -> Quantization | None:
    """The runtime's quantization_config (method + kwargs); never the removed load_in_8bit= keyword."""
    method = checkpoint_method(spec)
    if precision in ("int8", NODECOMP):
        cfg: dict = {"load_in_8bit": True}
        if precision == NODECOMP:
            cfg["llm_int8_threshold"] = 0.0
        if offloaded:
            cfg["llm_int8_enable_fp32_cpu_offload"] = True
        return Quantization("bitsandbytes", cfg)
    if precision == "nf4":
        cfg = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype}
        if offloaded:
            cfg["llm_int8_enable_fp32_cpu_offload"] = True
        return Quantization("bitsandbytes", cfg)
    if precision == "mxfp4":
        return Quantization("mxfp4", {"dequantize": False})
    if precision == "fp8":
        if method == "fp8":
            return None  # the checkpoint's own quantization_config is used as is
        return Quantization("fp8", {"activation_scheme": "dynamic", "weight_block_size": [128, 128]})
    if method in ("mxfp4", "fp8"):  # dequantized to the compute precision while loading
        return Quantization(method, {"dequantize": True})
    return None


def conditions(spec: ModelSpec, precision: str) -> tuple[str, ...]:
    """What must hold on the node for the plan to be right (shown with the plan)."""
    out = []
    if precision == "mxfp4":
        out.append(f"MXFP4 stays MXFP4 only with {mxfp4_needs(spec.transformers)} on the node; otherwise transformers "
                   "dequantizes to bf16 while loading (see the bf16 plan)")
    if precision == NODECOMP:
        out.append(NODECOMP_CONDITION)
    if precision in BNB_ALL:
        out.append("bitsandbytes must be installed on the node")
    if precision == "fp8" and checkpoint_method(spec) != "fp8":
        out.append(f"fp8 quantization on load needs a GPU with compute capability >= "
                   f"{version_text(behaviour('fp8_min_cc', spec.transformers))}")
    if precision.startswith(("gptq", "awq")):
        out.append("gptqmodel must be installed on the node")
    return tuple(out)


# --- vLLM (0.32; each rule names the file of the vllm package that decides it) ----------------------------------
VLLM_LADDER = ("bf16", "fp8", "mxfp4")  # a plain checkpoint: as stored, then online fp8, then online MXFP4
VLLM_ONLINE = {"fp8": "fp8_per_tensor", "mxfp4": "mxfp4"}  # --quantization for a bf16/fp16 checkpoint
VLLM_CHECKPOINT_MIN_CC = {  # get_min_capability() of the checkpoint's quantization config
    "fp8": ((7, 5), "model_executor/layers/quantization/fp8.py (Fp8Config: 75; Marlin weight-only below 8.9)"),
    "mxfp4": ((8, 0), "model_executor/layers/quantization/mxfp4.py:71 (Mxfp4Config: 80)"),
    "gptq": ((6, 0), "model_executor/layers/quantization/auto_gptq.py (AutoGPTQConfig: 60; Marlin from 7.5)"),
    "awq": ((7, 5), "model_executor/layers/quantization/auto_awq.py (AutoAWQConfig: 75)"),
}
VLLM_NO_BNB = ("vLLM 0.32 has no bitsandbytes (model_executor/layers/quantization/__init__.py registers no such "
               "method, and there is no bitsandbytes loader): use fp8 or mxfp4, or the transformers engine")


def vllm_choices(spec: ModelSpec, gpu: GpuSpec | None) -> list[PrecisionChoice]:
    """What vLLM can hold this model in on ``gpu``, best first."""
    cc = gpu.compute_capability if gpu else None
    where = f"{gpu.name} (compute capability {'.'.join(map(str, cc))})" if gpu else "the CPU"
    method, native = checkpoint_method(spec), native_precision(spec)
    base = compute_precision(gpu)
    out: list[PrecisionChoice] = []
    if gpu is None:
        return [PrecisionChoice(base, False, "vplan plans vLLM for GPU nodes only (the CPU build runs in tests)")]
    if method == "bitsandbytes":
        return [PrecisionChoice(native or "bnb-int8", False, VLLM_NO_BNB)]
    if method is not None:
        need, where_rule = VLLM_CHECKPOINT_MIN_CC.get(method, (None, ""))
        if need is None:
            return [PrecisionChoice(native or method, False, f"vplan does not model vLLM's {method} layout")]
        ok = cc >= need
        out.append(PrecisionChoice(native, ok, "" if ok else f"{method} needs compute capability >= "
                                   f"{need[0]}.{need[1]}; {where} has less ({where_rule})"))
        out.append(PrecisionChoice(base, False, f"vLLM runs a {native} checkpoint as stored; it does not dequantize it "
                                   "to the compute dtype"))
    else:
        out.append(PrecisionChoice(base, True))
        online = cc >= (7, 5)  # online/base.py:209-212 (OnlineQuantizationConfig: 75)
        why = "" if online else f"vLLM's online quantization needs compute capability >= 7.5; {where} has less " \
                                "(model_executor/layers/quantization/online/base.py:209-212)"
        out.append(PrecisionChoice("fp8", online, why))
        out.append(PrecisionChoice("mxfp4", online, why))
    out += [PrecisionChoice(p, False, VLLM_NO_BNB) for p in BNB]
    return out


def vllm_ladder(spec: ModelSpec, gpu: GpuSpec | None, *, forced: str | None) -> Ladder:
    cs = vllm_choices(spec, gpu)
    if forced:
        want = forced.strip().lower()
        c = next((c for c in cs if c.precision == want), None)
        if c is None or not c.ok:
            why = c.why_not if c else f"vLLM holds {spec.model_id} in {', '.join(x.precision for x in cs if x.ok) or 'nothing'} here"
            raise UsageError(f"--precision {want} is not possible for {spec.model_id} with vLLM on "
                             f"{gpu.name if gpu else 'CPU'}: {why}")
        return Ladder((want,), (), ())
    return Ladder(tuple(c.precision for c in cs if c.ok), (), tuple(c for c in cs if not c.ok))


def vllm_quantization(spec: ModelSpec, precision: str) -> str | None:
    """vLLM's --quantization: the checkpoint's own method, an online shorthand, or None."""
    method = checkpoint_method(spec)
    if method is not None:
        return method
    return VLLM_ONLINE.get(precision)


def vllm_marlin(precision: str, gpu: GpuSpec) -> bool:
    """fp8 runs weight-only through Marlin on GPUs without FP8 tensor cores
    (model_executor/kernels/linear/__init__.py:443-452, _POSSIBLE_FP8_KERNELS; MarlinFP8ScaledMMLinearKernel)."""
    return precision == "fp8" and gpu.compute_capability < FP8_MIN_CC


def vllm_conditions(spec: ModelSpec, precision: str, gpu: GpuSpec) -> tuple[str, ...]:
    out = []
    if vllm_marlin(precision, gpu):
        out.append(f"fp8 on {gpu.name} is weight-only (W8A16) through vLLM's Marlin kernel: no FP8 tensor cores")
    if precision == "mxfp4" and checkpoint_method(spec) is None:
        out.append("online MXFP4 (--quantization mxfp4): weights rounded to 4 bits at load, no calibration; check "
                   "the model's quality on your task")
    return tuple(out)
