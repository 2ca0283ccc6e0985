"""Preflight: the node against the plan, in seconds, before any weight is read."""
from vplan.runtime.preflight.checks import Check, PreflightReport, offload_folder_for, packages_needed, run_preflight
from vplan.runtime.preflight.probes import GpuInfo, cgroup_memory_limit, host_ram_limit, probe_gpus, slurm_memory_limit

__all__ = ["Check", "GpuInfo", "PreflightReport", "cgroup_memory_limit", "host_ram_limit", "offload_folder_for",
           "packages_needed", "probe_gpus", "run_preflight", "slurm_memory_limit"]
