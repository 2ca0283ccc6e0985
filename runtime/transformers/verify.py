"""After loading: are the weights held the way the plan says? Runs on every load path (`vplan run`, with or
without preflight, and the Python API), because some differences only show once transformers has decided:
an MXFP4 checkpoint silently dequantized to bf16 (no `kernels` on the node), a bitsandbytes plan whose Linears
were not converted, a compute dtype other than planned, weights per device other than planned (fp32-kept
modules, a transformers release that changed a layout).

Each check is a :class:`WeightCheck`; differences are reported with the numbers and the next step, never
silently. The bytes compared are the model's own tensors per device (vplan.runtime.report.tensor_bytes_by_device)
against the plan's ``weights_bytes``: the planner's figures are exact per block, so anything beyond rounding of
small buffers is a real difference.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

from vplan.planner.plan import Plan
from vplan.planner.units import MIB

BYTES_TOLERANCE_FRACTION = 0.005  # bitsandbytes state objects and small buffers the planner rounds differently
BYTES_TOLERANCE_MIN = 1 * MIB


@dataclass(frozen=True)
class WeightCheck:
    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"[*] weights {self.name}: {self.detail}" if self.ok else f"[!] weights {self.name}: {self.detail}"

    def to_dict(self) -> dict:
        return asdict(self)


def _kinds(model) -> tuple[Counter, Counter, int]:
    """(module class names, floating dtypes by element count of unquantized parameters, MXFP4 block tensors)."""
    classes = Counter(type(m).__name__ for m in model.modules())
    dtypes: Counter = Counter()
    mx_blocks = 0
    for name, p in model.named_parameters():
        if name.endswith("_blocks") and str(p.dtype) == "torch.uint8":
            mx_blocks += 1
        elif p.dtype.is_floating_point and p.dtype.itemsize >= 2:
            dtypes[str(p.dtype).removeprefix("torch.")] += p.numel()
    return classes, dtypes, mx_blocks


def _precision_check(plan: Plan, classes: Counter, mx_blocks: int) -> WeightCheck | None:
    q = plan.quantization
    if plan.precision == "mxfp4":
        if mx_blocks:
            return WeightCheck("format", True, f"MXFP4 kept on the GPU ({mx_blocks} packed expert tensors)")
        return WeightCheck("format", False, "the plan keeps MXFP4 but transformers dequantized the experts to bf16 "
                           "(no `kernels` >=0.18.2,<0.19 / triton >= 3.4 here): they take ~3x the planned bytes; "
                           "re-plan without --mxfp4-kernels (`vplan plan MODEL -o plan.json`)")
    if q and q.method == "mxfp4" and mx_blocks:
        return WeightCheck("format", False, "the plan dequantizes MXFP4 to bf16 but the experts stayed MXFP4: the GPUs "
                           "hold less than planned; re-plan with --mxfp4-kernels to use one GPU less")
    want = {"int8": "Linear8bitLt", "nf4": "Linear4bit"}.get(plan.precision)
    if want:
        n = classes.get(want, 0)
        return WeightCheck("format", n > 0, f"{n} bitsandbytes {want} modules" if n else
                           f"the plan quantizes with bitsandbytes ({plan.precision}) but no {want} module was loaded: "
                           "check that bitsandbytes is installed and re-run preflight")
    return None


def verify_loaded(model, plan: Plan, tensors_by_device: dict[str, int]) -> tuple[WeightCheck, ...]:
    """Compare the loaded model with the plan: storage format, compute dtype, weights per device."""
    classes, dtypes, mx_blocks = _kinds(model)
    out = []
    fmt = _precision_check(plan, classes, mx_blocks)
    if fmt:
        out.append(fmt)
    if dtypes:
        top = dtypes.most_common(1)[0][0]
        out.append(WeightCheck("dtype", top == plan.dtype, f"unquantized parameters mostly {top}" +
                               ("" if top == plan.dtype else f", the plan computes in {plan.dtype}: re-plan on this node")))
    for d in plan.devices:
        if d.device == "disk" and not plan.offload_folder:
            continue  # read in place from the checkpoint's shards: stored, not loaded, bytes
        have = tensors_by_device.get(d.device, 0)
        if not d.weights_bytes and not have:
            continue
        tol = max(BYTES_TOLERANCE_MIN, int(d.weights_bytes * BYTES_TOLERANCE_FRACTION))
        ok = abs(have - d.weights_bytes) <= tol
        where = f"GPU {d.device}" if d.is_gpu else d.device
        detail = f"{where} holds {have:,} B of weights, planned {d.weights_bytes:,} B"
        if not ok:
            detail += f" ({100 * (have - d.weights_bytes) / max(d.weights_bytes, 1):+.1f} %): the node's transformers " \
                      "or checkpoint differs from what the plan was made for; re-plan here"
        out.append(WeightCheck(f"bytes {where}", ok, detail))
    return tuple(out)
