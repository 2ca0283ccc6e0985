"""The runtime's Python API in one place (imports torch only when a function that needs it runs).

    from vplan.runtime import load_planned, run_preflight, run_records
    report = run_preflight(read_plan("plan.json")); report.raise_for_failures()
    model, tokenizer, load_report = load_planned("plan.json")
    run_vllm(read_plan("vllm-plan.json"), records, output="out.jsonl")   # a vLLM plan: through its server
"""
from __future__ import annotations

from vplan.runtime.records import done_ids, read_records
from vplan.runtime.transformers.generate import generate_record, run_records
from vplan.runtime.transformers.load import build_from_pretrained_kwargs, load_planned
from vplan.runtime.preflight import Check, GpuInfo, PreflightReport, run_preflight
from vplan.runtime.report import DeviceMeasure, LoadReport, RunReport
from vplan.runtime.vllm.run import run_vllm

__all__ = ["Check", "DeviceMeasure", "GpuInfo", "LoadReport", "PreflightReport", "RunReport", "build_from_pretrained_kwargs",
           "done_ids", "generate_record", "load_planned", "read_records", "run_preflight", "run_records", "run_vllm"]
