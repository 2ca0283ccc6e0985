"""Load a model exactly as the plan says: every from_pretrained argument comes from the Plan.

Nothing is guessed at load time: revision, dtype, quantization config, device map, offload folder,
trust_remote_code and attention implementation are the plan's. ``VPLAN_OFFLOAD_FOLDER`` may move the offload
folder (node-local scratch), and ``model_path`` may point at a local copy of the same checkpoint.
"""
from __future__ import annotations

import inspect
import os
import time
from pathlib import Path

from vplan.planner.errors import PlanFileError, RunError
from vplan.planner.plan import Plan, read_plan
from vplan.runtime.alloc import allocator_report, ensure_expandable_segments

from vplan.runtime.preflight import offload_folder_for
from vplan.runtime.transformers.verify import verify_loaded
from vplan.runtime.report import (LoadReport, Log, fmt_bytes, gpu_snapshot, load_measures, render_measures, rss_bytes,
                     stderr_log, tensor_bytes_by_device)

_QUANT_CLASSES = {"bitsandbytes": "BitsAndBytesConfig", "mxfp4": "Mxfp4Config", "fp8": "FineGrainedFP8Config"}
_CHECKPOINT_QUANT = ("gptq", "awq", "compressed-tensors", "checkpoint")  # transformers reads the checkpoint's config


def device_key(device: str | int):
    """Plan device strings to transformers': "0" -> 0, "cpu"/"disk" unchanged."""
    s = str(device)
    if s.isdigit():
        return int(s)
    if s in ("cpu", "disk"):
        return s
    raise PlanFileError(f"device {device!r} in the plan is not a GPU index, 'cpu' or 'disk'; re-create the plan with `vplan plan`")


def quantization_config(plan: Plan):
    q = plan.quantization
    if not q:
        return None
    method = q.method
    if method in _CHECKPOINT_QUANT:
        return None
    if method not in _QUANT_CLASSES:
        raise PlanFileError(f"the plan's quantization method {method!r} is not one the runtime loads "
                            f"({', '.join(_QUANT_CLASSES)}, or pre-quantized {', '.join(_CHECKPOINT_QUANT[:2])}); re-create the plan")
    import transformers

    cls = getattr(transformers, _QUANT_CLASSES[method])
    config = dict(q.config)
    named = {n for n, p in inspect.signature(cls.__init__).parameters.items()
             if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n != "self"}
    unknown = sorted(set(config) - named)
    if unknown:  # these classes swallow unknown keywords silently; a plan must not
        raise PlanFileError(f"the plan's {method} quantization config is invalid for transformers {transformers.__version__} "
                            f"(unknown keys {unknown}); re-create the plan with `vplan plan`")
    try:
        return cls(**config)
    except (TypeError, ValueError) as e:
        raise PlanFileError(f"the plan's {method} quantization config is invalid for transformers {transformers.__version__} ({e}); "
                            "re-create the plan with `vplan plan`") from None


def auto_model_class(model_type: str | None):
    """The Auto class a config loads with, here and in the simulator: ``AutoModelForCausalLM`` where transformers
    maps the model type (text models; gemma3 gives its whole multimodal model, llama4 its text model only), else
    ``AutoModelForImageTextToText`` where that maps it (mistral3, qwen2_5_vl, ...), else ``AutoModelForCausalLM``
    (remote code). The planner sizes the same class (planner/model/behaviours.py ``causal_lm_multimodal``)."""
    import transformers
    from transformers.models.auto import modeling_auto

    if model_type not in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and \
            model_type in modeling_auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return transformers.AutoModelForImageTextToText
    return transformers.AutoModelForCausalLM


def build_from_pretrained_kwargs(plan: Plan, *, local: bool = False, env=None) -> dict:
    """The keyword arguments for ``from_pretrained`` of :func:`auto_model_class`, from the plan only.

    ``local``: loading from a folder, where a Hub revision means nothing and is left out.
    """
    import torch

    dtype = getattr(torch, plan.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise PlanFileError(f"the plan's dtype {plan.dtype!r} is not a torch dtype; re-create the plan with `vplan plan`")
    kw: dict = {"dtype": dtype}
    if not local and plan.revision:
        kw["revision"] = plan.revision
    qc = quantization_config(plan)
    if qc is not None:
        kw["quantization_config"] = qc
    # The explicit map governs placement; transformers ignores max_memory with a dict device_map
    # (integrations/accelerate.py _get_device_map), so none is passed: vplan checked the budgets itself.
    kw["device_map"] = {name: device_key(dev) for name, dev in plan.device_map.items()}
    if "disk" in plan.device_map.values():
        folder = offload_folder_for(plan, env)
        if folder:
            kw["offload_folder"] = folder
    kw["trust_remote_code"] = bool(plan.trust_remote_code)
    kw["attn_implementation"], _ = attention_to_run(plan.config or {"model_type": plan.architecture},
                                                    plan.workload.attn_implementation)
    return kw


def attention_to_run(config: dict, asked: str) -> tuple[str, str | None]:
    """The attention transformers runs for ``asked`` (and why, when it differs): eager for the architectures with no
    sdpa path (behaviour eager_only), where asking for sdpa raises at load, as the planner sized them
    (memory/activations.attention_run: the text model's architecture). Found on an H100: gpt-oss plans with sdpa
    failed to load."""
    import transformers

    from vplan.planner.model.behaviours import behaviour

    model_type = (config.get("text_config") or {}).get("model_type") or config.get("model_type")
    eager_only = behaviour("eager_only", transformers.__version__)
    if model_type in eager_only and asked != "eager":
        return "eager", f"{model_type} has no sdpa path in transformers {transformers.__version__} ({eager_only[model_type]})"
    return asked, None


def _quiet_bitsandbytes_cast_warning() -> None:
    """bitsandbytes logs its fp16-cast notice at every 8-bit matmul on CPU: keep the first one only."""
    import logging

    class _Once(logging.Filter):
        seen = False

        def filter(self, record):
            if "inputs will be cast" in str(record.msg):
                if _Once.seen:
                    return False
                _Once.seen = True
            return True

    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_Once())


def _failure_figures(plan: Plan) -> str:
    planned = ", ".join(f"{'GPU ' + d.device if d.device.isdigit() else d.device} {fmt_bytes(d.total_bytes)}" for d in plan.devices)
    measured = []
    try:
        for i, g in gpu_snapshot().items():
            measured.append(f"GPU {i} allocated {fmt_bytes(g['allocated_bytes'])}, device used {fmt_bytes(g['device_used_bytes'])}")
    except Exception:  # the figures are a courtesy; never mask the real failure
        pass
    measured.append(f"process RSS {fmt_bytes(rss_bytes())}")
    return f"planned: {planned}; measured at failure: {'; '.join(measured)}"


def is_oom(e: BaseException) -> bool:
    import torch

    return isinstance(e, torch.OutOfMemoryError) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def load_planned(plan_or_path: Plan | str | os.PathLike, *, model_path: str | None = None, log: Log = stderr_log,
                 tty: bool | None = None):
    """Load model and tokenizer as ``plan`` says; returns ``(model, tokenizer, LoadReport)``.

    Raises :class:`RunError` (exit 5) when loading fails, with the plan's figures and the measured ones.
    """
    plan = plan_or_path if isinstance(plan_or_path, Plan) else read_plan(plan_or_path)
    ensure_expandable_segments()
    import torch
    from transformers import AutoTokenizer

    _quiet_bitsandbytes_cast_warning()
    source = str(model_path) if model_path else plan.model_id
    local = bool(model_path) or plan.source == "local" or Path(source).is_dir()
    kwargs = build_from_pretrained_kwargs(plan, local=local)
    gpus = []
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append({"index": i, "name": props.name, "total_bytes": int(props.total_memory)})
            log(f"[*] GPU {i}: {props.name}, {props.total_memory / 1e9:.1f} GB total memory")
            torch.cuda.reset_peak_memory_stats(i)
    elif plan.gpus == 0:
        log("[*] No GPU: CPU-only plan")
    gpu_budgets = ", ".join(f"GPU {d.device} {fmt_bytes(d.total_bytes)} of {fmt_bytes(d.capacity_bytes)}"
                            for d in plan.gpu_devices)
    log(f"[*] Device map: explicit from the plan ({len(plan.device_map)} modules; transformers ignores max_memory "
        f"with an explicit map, so none is set){'; planned peaks: ' + gpu_budgets if gpu_budgets else ''}")
    devices = sorted({str(v) for v in plan.device_map.values()}, key=lambda d: (not d.isdigit(), d))
    log(f"[*] Loading {source}" + (f"@{plan.revision[:12]}" if plan.revision and not local else "")
        + f" as {plan.precision} ({plan.dtype}) on {', '.join(devices)}"
        + (f", offload folder {kwargs['offload_folder']}" if "offload_folder" in kwargs else ""))
    try:
        tok_kw = {"trust_remote_code": plan.trust_remote_code}
        if "revision" in kwargs:
            tok_kw["revision"] = kwargs["revision"]
        tokenizer = AutoTokenizer.from_pretrained(source, **tok_kw)
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        model = auto_model_class((plan.config or {}).get("model_type") or plan.architecture).from_pretrained(
            source, **kwargs)
        load_s = time.perf_counter() - t0
        rss_delta = rss_bytes() - rss0
    except Exception as e:
        what = "out of memory" if is_oom(e) else f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        raise RunError(f"loading {source} failed ({what}); {_failure_figures(plan)}; "
                       "check `vplan preflight PLAN` and re-plan if the node differs") from e
    model.eval()
    log(f"[*] Model loaded successfully! ({load_s:.2f} s)")
    used = getattr(model, "hf_device_map", None)
    planned_map = {k: str(v) for k, v in plan.device_map.items()}
    if len(set(planned_map.values())) > 1:
        used_s = {k: str(v) for k, v in (used or {}).items()}
        matches = used_s == planned_map
        log(f"[*] Device map: {'as planned' if matches else 'DIFFERS from the plan'} "
            f"({', '.join(f'{d}: {list(planned_map.values()).count(d)}' for d in devices)} modules)")
        if not matches:
            diff = sorted(set(used_s.items()) ^ set(planned_map.items()))[:4]
            log(f"[!] device map differences (first): {diff}")
    else:
        matches = used is None or {str(v) for v in used.values()} == set(planned_map.values())
    tensors = tensor_bytes_by_device(model, used or plan.device_map)
    checks = verify_loaded(model, plan, tensors)
    for c in checks:
        log(c.line())
    alloc = allocator_report()
    if alloc["active"] is not None:
        log(f"[{'*' if alloc['active'] else '!'}] CUDA allocator: expandable_segments "
            f"{'on' if alloc['active'] else 'OFF'} (torch settings {alloc['torch_settings'] or alloc['requested']!r})")
    measures = load_measures(plan, tensors=tensors, rss_delta=rss_delta, gpus=gpu_snapshot() if gpus else {},
                             offload_folder=kwargs.get("offload_folder"))
    render_measures(measures, "Memory after load, measured vs planned", log, tty=tty)
    shown = {k: (repr(v) if not isinstance(v, (str, int, float, bool, dict)) else v) for k, v in kwargs.items()}
    report = LoadReport(plan.model_id, source, load_s, planned_map, {k: str(v) for k, v in used.items()} if used else None,
                        matches, measures, tuple(gpus), shown, tuple(c.to_dict() for c in checks), alloc)
    return model, tokenizer, report
