"""The runtime's Python API in one place (imports torch only when a function that needs it runs).

    from vplan.runtime import load_planned, run_preflight, run_records
    report = run_preflight(read_plan("plan.json")); report.raise_for_failures()
    model, tokenizer, load_report = load_planned("plan.json")
    run_vllm(read_plan("vllm-plan.json"), records, output="out.jsonl")   # a vLLM plan: through its server
"""
from __future__ import annotations

import functools

from vplan.runtime.records import done_ids, read_records
from vplan.runtime.transformers import generate as _generate, load as _load
from vplan.runtime.preflight import Check, GpuInfo, PreflightReport, run_preflight
from vplan.runtime.report import DeviceMeasure, LoadReport, RunReport
from vplan.runtime.vllm.run import run_vllm

RUNTIME_PACKAGES = ("torch", "transformers", "accelerate", "safetensors", "psutil")


def needs_runtime(fn):
    """``fn``, but a missing runtime package ends in one line that says how to install it (not a bare
    ``No module named 'torch'``); still a ModuleNotFoundError with the package's name."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            top = (e.name or "").split(".")[0]
            if top not in RUNTIME_PACKAGES:
                raise
            raise ModuleNotFoundError(f"vplan.runtime.{fn.__name__} needs {top}, which is not installed here: install "
                                      "the runtime with `pip install 'vplan[runtime]'` (on the GPU nodes; planning "
                                      "needs none of it)", name=e.name) from None
    return call


generate_record, run_records = needs_runtime(_generate.generate_record), needs_runtime(_generate.run_records)
build_from_pretrained_kwargs, load_planned = needs_runtime(_load.build_from_pretrained_kwargs), needs_runtime(_load.load_planned)

__all__ = ["Check", "DeviceMeasure", "GpuInfo", "LoadReport", "PreflightReport", "RunReport", "build_from_pretrained_kwargs",
           "done_ids", "generate_record", "load_planned", "read_records", "run_preflight", "run_records", "run_vllm"]
