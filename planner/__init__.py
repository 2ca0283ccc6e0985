"""vplan's planner: pure planning (no torch, no GPU; I/O only in vplan.planner.source).

The library entry points load on first use, so ``import vplan.planner`` stays cheap::

    from vplan.planner import check, plan_for, read_plan, write_plan
"""
from __future__ import annotations

_EXPORTS = {
    "check": "vplan.planner.api", "check_one": "vplan.planner.api", "plan_for": "vplan.planner.api",
    "CheckOptions": "vplan.planner.api", "CheckReport": "vplan.planner.api",
    "SearchOptions": "vplan.planner.search.core", "Workload": "vplan.planner.plan.contract",
    "Plan": "vplan.planner.plan.contract", "read_plan": "vplan.planner.plan.io", "write_plan": "vplan.planner.plan.io",
    "default_profile": "vplan.planner.hardware.cluster", "profile_for_gpu": "vplan.planner.hardware.cluster",
    "load_profile": "vplan.planner.slurm.profile_toml",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vplan.planner' has no attribute {name!r}")
