"""Preflight: the node against the plan, in seconds, before any weight is read (per engine: checks.py for
transformers, vllm.py for vLLM; ``run_preflight`` picks by ``plan.engine``)."""
from vplan.runtime.preflight.checks import Check, PreflightReport, offload_folder_for, packages_needed
from vplan.runtime.preflight.checks import run_preflight as transformers_preflight
from vplan.runtime.preflight.probes import GpuInfo, cgroup_memory_limit, host_ram_limit, probe_gpus, slurm_memory_limit
from vplan.runtime.preflight.vllm import server_preflight, vllm_preflight


def run_preflight(plan, **kwargs) -> PreflightReport:
    """All checks of this node against ``plan`` for its engine (keyword arguments: see each engine's function)."""
    if plan.engine == "vllm":
        return vllm_preflight(plan, **kwargs)
    return transformers_preflight(plan, **kwargs)


__all__ = ["Check", "GpuInfo", "PreflightReport", "cgroup_memory_limit", "host_ram_limit", "offload_folder_for",
           "packages_needed", "probe_gpus", "run_preflight", "server_preflight", "slurm_memory_limit",
           "transformers_preflight", "vllm_preflight"]
