"""The library entry points: what the CLI, the tests and the benchmarks call.

    from vplan.planner import check, CheckOptions
    report = check(["Qwen/Qwen3-32B"])            # default nodes, default workload
    report.results[0].plan.status                   # "fits"
    check(["deepseek-ai/DeepSeek-V2.5"], options=CheckOptions(search=SearchOptions(engine="vllm")))
    report.to_dict()                                # the `vplan check --json` contract

``check`` runs the pipeline once per model: source (Hub, caches, catalog, folder) -> ModelSpec -> search (per
engine: transformers, vLLM, or both) -> the chosen plan with every alternative, and the catalog setups that would
run it when nothing fits here. ``results`` hold one entry per model and engine, model by model.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

from vplan.planner.hardware.cluster import ClusterProfile, default_profile
from vplan.planner.model import build_spec
from vplan.planner.plan.contract import Plan
from vplan.planner.search.core import CheckResult, SearchOptions, search
from vplan.planner.search.matrix import suggest_hardware
from vplan.planner.search.vllm import search_vllm
from vplan.planner.source import resolve_model


@dataclass(frozen=True)
class CheckOptions:
    """How to find the models (the search's own options are in ``search``)."""

    search: SearchOptions = field(default_factory=SearchOptions)
    revision: str | None = None  # Hub revision to plan for
    offline: bool | None = None  # None: follow HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE
    suggest: bool = True  # when nothing fits, search the GPU catalog for setups that would


@dataclass(frozen=True)
class CheckReport:
    profile: ClusterProfile
    options: CheckOptions
    results: tuple[CheckResult, ...]

    def to_dict(self) -> dict:
        from vplan.planner.report import check_report_dict

        return check_report_dict(self)


ENGINES = ("transformers", "vllm")


def engines_of(options: CheckOptions) -> tuple[str, ...]:
    """The engines ``options`` asks for, in display order ("all": both)."""
    e = options.search.engine
    return ENGINES if e == "all" else (e,)


def check_engines(ref: str, profile: ClusterProfile | None = None,
                  options: CheckOptions | None = None) -> tuple[CheckResult, ...]:
    """One result per engine asked for (the model is resolved once)."""
    profile = profile or default_profile()
    options = options or CheckOptions()
    src = resolve_model(ref, revision=options.revision, offline=options.offline)
    spec = build_spec(src.model_id, src.revision, src.source, src.config, src.checkpoint, notes=src.notes,
                      transformers=options.search.transformers)
    out = []
    for engine in engines_of(options):
        if engine == "vllm":
            out.append(search_vllm(spec, profile, options.search))
            continue
        res = search(spec, profile, options.search)
        if options.suggest and not res.plan.fits:
            res = replace(res, suggestions=suggest_hardware(spec, replace(options.search, engine="transformers")))
        out.append(res)
    return tuple(out)


def check_one(ref: str, profile: ClusterProfile | None = None, options: CheckOptions | None = None) -> CheckResult:
    """The result of the first engine asked for (``--engine all``: transformers)."""
    return check_engines(ref, profile, options)[0]


def check(refs: Sequence[str], profile: ClusterProfile | None = None, options: CheckOptions | None = None) -> CheckReport:
    """Plan every model in ``refs`` on ``profile`` (default: the problem statement's nodes)."""
    profile = profile or default_profile()
    options = options or CheckOptions()
    return CheckReport(profile, options, tuple(res for r in refs for res in check_engines(r, profile, options)))


def plan_for(ref: str, profile: ClusterProfile | None = None, options: CheckOptions | None = None) -> Plan:
    """The chosen plan for one model (write it with ``vplan.planner.plan.write_plan``)."""
    return check_one(ref, profile, options).plan
