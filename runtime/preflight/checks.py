"""Preflight: the node against the plan, in seconds, before any weight is read.

Every check is a :class:`Check` (name, ok, detail, fix): ``detail`` says what was found against what the plan
needs, ``fix`` the next step. The probes (vplan.runtime.preflight.probes) take their inputs as arguments
(``env=``, ``gpus=``) so tests run the checks against fake nodes; torch is never imported in a dry run.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from vplan.planner.errors import PreflightError
from vplan.planner.model.behaviours import DEFAULT_TRANSFORMERS, behaviour, version_of_requirement
from vplan.planner.plan.contract import Plan
from vplan.planner.source.hf_cache import hub_cache_dir, is_offline, offline_variable, snapshot_dir
from vplan.planner.source.local import missing_model_files
from vplan.planner.units import GIB, gib
from vplan.runtime.preflight.probes import GpuInfo, free_disk, host_ram_limit, installed_version, probe_gpus


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False  # dry run: not executed; `detail` says what would be checked

    @property
    def verdict(self) -> str:
        return "skip" if self.skipped else ("ok" if self.ok else "FAIL")

    def line(self) -> str:
        tail = f"; {self.fix}" if (self.fix and not self.ok) else ""
        return f"[{self.verdict}] {self.name}: {self.detail}{tail}"

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": self.verdict}


@dataclass(frozen=True)
class PreflightReport:
    model_id: str
    plan_status: str
    dry_run: bool
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "plan_status": self.plan_status, "dry_run": self.dry_run, "ok": self.ok,
                "checks": [c.to_dict() for c in self.checks]}

    def raise_for_failures(self, shown: bool = False) -> None:
        """PreflightError for the first failure with its fix; ``shown``: the [FAIL] lines were already printed, so
        the error only names the failed checks (each failure is said once)."""
        bad = self.failures
        if bad and shown:
            names = ", ".join(c.name for c in bad)
            raise PreflightError(f"preflight: {len(bad)} check{'s' if len(bad) > 1 else ''} failed ({names}); "
                                 "fix what the [FAIL] line" + ("s say" if len(bad) > 1 else " says") + " and rerun")
        if bad:
            more = f" (+{len(bad) - 1} more failed check(s): `vplan preflight PLAN`)" if len(bad) > 1 else ""
            raise PreflightError(f"preflight {bad[0].name}: {bad[0].detail}; {bad[0].fix}{more}")


# ------------------------------------------------------------------------------------------- the checks
def offload_folder_for(plan: Plan, env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get("VPLAN_OFFLOAD_FOLDER") or plan.offload_folder


def packages_needed(plan: Plan) -> list[tuple[str, str, str]]:
    """(distribution, version spec, why) the plan needs on this node: the runtime, and its requirements (the
    transformers range the memory model was computed for, the quantization packages)."""
    need = {"torch": ("", "the runtime"), "transformers": ("", "the runtime"), "accelerate": ("", "device maps")}
    q = plan.quantization
    if (q and q.method == "bitsandbytes") or plan.precision in ("int8", "nf4"):
        need["bitsandbytes"] = ("", f"{plan.precision} weights")
    if q and q.method in ("gptq", "awq") or plan.precision.startswith(("gptq", "awq")):
        need["gptqmodel"] = ("", f"{plan.precision} checkpoint")
    for dist, req in plan.requirements.items():
        need[dist] = (req.spec, req.why)
    return [(dist, spec, why) for dist, (spec, why) in need.items()]


def _check_packages(plan: Plan) -> list[Check]:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    out = []
    for dist, spec, why in packages_needed(plan):
        have = installed_version(dist)
        name = f"package {dist}"
        pip = "pip install 'vplan[runtime]'" if dist == "torch" and not spec else f"pip install '{dist}{spec}'"
        if have is None:
            out.append(Check(name, False, f"{dist} is not installed (needed for {why})", f"run `{pip}` in this environment"))
            continue
        try:
            good = not spec or SpecifierSet(spec).contains(have, prereleases=True)
        except InvalidSpecifier:
            good = True
        if good:
            out.append(Check(name, True, f"{dist} {have}" + (f" satisfies {spec}" if spec else "")))
        else:
            out.append(Check(name, False, f"{dist} {have} installed, the plan needs {spec} ({why})",
                             f"run `{pip}`, or re-plan here with `vplan plan`"))
    return out


def _capability_needed(plan: Plan) -> tuple[tuple[int, int], str] | None:
    """The compute capability the plan's precision needs, from the behaviour table of the transformers release the
    plan was made for (vLLM plans: the engine's own rules, checked by the vLLM preflight)."""
    if plan.engine != "transformers":
        return None
    req = plan.requirements.get("transformers")
    version = version_of_requirement(req.spec) if req and req.spec else DEFAULT_TRANSFORMERS
    q = plan.quantization
    if plan.precision == "fp8":
        return tuple(behaviour("fp8_min_cc", version)), "fp8 weights"
    if q and q.method == "mxfp4" and not q.config.get("dequantize", False):
        return tuple(behaviour("mxfp4_requirements", version)["min_cc"]), "MXFP4 kernels"
    if plan.dtype == "bfloat16":
        return (8, 0), "bfloat16"
    return None


def _check_gpus(plan: Plan, gpus: list[GpuInfo], env: Mapping[str, str]) -> list[Check]:
    visible = env.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    planned = plan.gpu_devices
    if plan.gpus == 0:
        extra = f"; {len(gpus)} GPU(s) visible and unused" if gpus else ""
        return [Check("gpus", True, f"CPU-only plan, no GPU needed{extra}")]
    out = []
    if len(gpus) < plan.gpus:
        out.append(Check("gpus", False, f"{len(gpus)} GPU(s) visible{where}, the plan needs {plan.gpus} x {plan.gpu_type}",
                         f"request them (sbatch --gres=gpu:{plan.gpus}) or re-plan with `vplan plan "
                         f"{'--max-gpus ' + str(len(gpus)) if gpus else '--gpus-per-node 0'}`"))
        return out
    out.append(Check("gpus", True, f"{len(gpus)} GPU(s) visible{where}, the plan uses {plan.gpus}"))
    family = (plan.gpu_type or "").split("-")[0].upper()
    need_cc = _capability_needed(plan)
    for g, budget in zip(gpus, planned):
        if family and family not in g.name.upper().replace(" ", ""):
            out.append(Check(f"gpu {g.index} type", False, f"GPU {g.index} is {g.name}, the plan is for {plan.gpu_type}",
                             f"run on a {plan.gpu_type} partition or re-plan with `vplan plan --gpu <this GPU type>`"))
        if need_cc and g.capability and tuple(g.capability) < need_cc[0]:
            cc, why = need_cc
            out.append(Check(f"gpu {g.index} capability", False,
                             f"GPU {g.index} has compute capability {g.capability[0]}.{g.capability[1]}, {why} needs {cc[0]}.{cc[1]}",
                             "re-plan for this GPU (`vplan plan --gpu ...`) so the precision changes"))
        need = budget.total_bytes
        ok = need <= g.free_bytes
        out.append(Check(f"gpu {g.index} memory", ok,
                         f"GPU {g.index} ({g.name}) has {gib(g.free_bytes)} free of {gib(g.total_bytes)}, the plan's peak is {gib(need)}",
                         "" if ok else "free the GPU (other processes hold memory: nvidia-smi) or re-plan with less context/batch"))
    return out


def check_host_ram(plan: Plan, env: Mapping[str, str]) -> Check:
    limit, src = host_ram_limit(env)
    need = plan.host_ram_bytes
    ok = need <= limit
    fix = "" if ok else f"request more (sbatch --mem={-(-int(need * 1.1) // GIB)}G) or re-plan with --node-mem {limit // GIB}GiB"
    return Check("host ram", ok, f"job RAM limit {gib(limit)} ({src}), the plan needs {gib(need)}", fix)


def _check_offload_disk(plan: Plan, env: Mapping[str, str]) -> Check | None:
    folder = offload_folder_for(plan, env)
    uses_disk = "disk" in plan.device_map.values() or plan.disk_bytes > 0
    if not uses_disk:
        return None
    if not folder:
        return Check("offload disk", True, "disk offload reads the safetensors shards in place; no offload folder needed")
    free, existing = free_disk(Path(folder))
    if not os.access(existing, os.W_OK):
        return Check("offload disk", False, f"offload folder {folder} is not writable (nearest existing: {existing})",
                     "set VPLAN_OFFLOAD_FOLDER to node-local scratch you can write (e.g. $TMPDIR/vplan-offload)")
    ok = plan.disk_bytes <= free
    return Check("offload disk", ok, f"{gib(free)} free at {folder}, the plan offloads {gib(plan.disk_bytes)}",
                 "" if ok else "point VPLAN_OFFLOAD_FOLDER at a larger local scratch or re-plan with --no-disk")


def check_model_files(plan: Plan, model_path: str | None, env: Mapping[str, str]) -> list[Check]:
    local = model_path or (plan.model_id if plan.source == "local" else None)
    if local:
        missing = missing_model_files(Path(local))
        return [Check("model files", not missing, f"{local}: " + ("complete" if not missing else "missing " + ", ".join(missing[:3])),
                      "" if not missing else "point --model-path at a folder with config.json and all weight shards")]
    cache = hub_cache_dir(env=env)
    snap = snapshot_dir(plan.model_id, plan.revision, cache)
    missing = missing_model_files(snap) if snap else ["snapshot"]
    rev = plan.revision or "main"
    if not missing:
        return [Check("model files", True, f"{plan.model_id}@{rev[:12]} is complete in the HF cache ({snap})")]
    if is_offline(env):
        what = "is not in" if snap is None else f"is incomplete in (missing {', '.join(missing[:3])})"
        return [Check("model files", False, f"{offline_variable(env)} and {plan.model_id}@{rev[:12]} {what} the HF cache {cache}",
                      f"download it where the Hub is reachable: `hf download {plan.model_id} --revision {rev}` with the same HF_HOME")]
    free, existing = free_disk(cache)
    ok = plan.hub_cache_bytes <= free
    return [Check("hub cache disk", ok, f"{plan.model_id} will be downloaded: {gib(free)} free at {existing}, needs {gib(plan.hub_cache_bytes)}",
                  "" if ok else "set HF_HOME to a filesystem with room, or download to local scratch and pass --model-path")]


def check_plan(plan: Plan) -> list[Check]:
    out = []
    if plan.status == "does-not-fit":
        out.append(Check("plan", False, f"the plan's status is does-not-fit ({plan.reason or 'no reason given'})",
                         "pick a plan that fits: `vplan check MODEL` lists the options"))
    else:
        out.append(Check("plan", True, f"{plan.model_id} {plan.precision} on {plan.gpus} x {plan.gpu_type or 'no GPU'}, status {plan.status}"))
    q = plan.quantization
    cfg = q.config if q else {}
    offloads = any(v in ("cpu", "disk") for v in plan.device_map.values())
    if q and q.method == "bitsandbytes" and cfg.get("load_in_8bit") and offloads and plan.gpus > 0 \
            and not cfg.get("llm_int8_enable_fp32_cpu_offload"):
        out.append(Check("plan quantization", False, "8-bit plan offloads modules to cpu/disk without llm_int8_enable_fp32_cpu_offload",
                         "re-create the plan with `vplan plan` (transformers refuses this combination)"))
    return out


def run_preflight(plan: Plan, *, model_path: str | None = None, dry_run: bool = False,
                  gpus: list[GpuInfo] | None = None, env: Mapping[str, str] | None = None) -> PreflightReport:
    """All checks of the node against ``plan``; ``gpus`` replaces the probe (tests), ``dry_run`` skips GPU ones."""
    env = os.environ if env is None else env
    checks = check_plan(plan)
    if dry_run:
        per_gpu = ", ".join(f"GPU {d.device} >= {gib(d.total_bytes)} free" for d in plan.gpu_devices)
        detail = (f"would check: {plan.gpus} x {plan.gpu_type} visible ({per_gpu})" if plan.gpus
                  else "would check: nothing (CPU-only plan)")
        checks.append(Check("gpus", True, detail, skipped=True))
    else:
        checks += _check_gpus(plan, probe_gpus() if gpus is None else gpus, env)
    checks.append(check_host_ram(plan, env))
    disk = _check_offload_disk(plan, env)
    if disk:
        checks.append(disk)
    checks += check_model_files(plan, model_path, env)
    checks += _check_packages(plan)
    return PreflightReport(plan.model_id, plan.status, dry_run, tuple(checks))
