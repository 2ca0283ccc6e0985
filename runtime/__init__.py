"""vplan runtime: preflight, load and run a Plan. The only package that imports torch/transformers/accelerate.

Importing this package is cheap: names resolve lazily from :mod:`vplan.runtime.api`, and torch is imported
only inside the functions that need it.
"""
from __future__ import annotations

_API = ("Check", "DeviceMeasure", "GpuInfo", "LoadReport", "PreflightReport", "RunReport", "build_from_pretrained_kwargs",
        "done_ids", "generate_record", "load_planned", "read_records", "run_preflight", "run_records", "run_vllm")
__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'vplan.runtime' has no attribute {name!r}")
