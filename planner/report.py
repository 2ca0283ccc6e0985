"""The `vplan check --json` contract: a check report as plain JSON (bytes as integers, speeds as numbers).

Top level: ``models`` (one entry per model and engine: facts, the chosen ``plan`` summary, ``alternatives``,
``refused`` precisions, ``suggestions``), ``cluster``, ``workload``, ``engine`` and ``comparison`` (per model checked
with both engines: job time, GPU-hours and the faster engine), ``experiment`` (per engine: summed job time and
GPU-hours of the runnable models, and those that do not run). Every size is in bytes (``*_bytes``); every list of
GPU figures has one entry per GPU of every node the plan uses.
"""
from __future__ import annotations

from vplan.planner.plan.contract import Plan


def plan_summary(p: Plan) -> dict:
    return {
        "engine": p.engine,
        "status": p.status,
        "rejection": p.rejection,
        "reason": p.reason,
        "nodes": p.nodes,
        "gpus": p.gpus,
        "gpu_type": p.gpu_type,
        "precision": p.precision,
        "gpu_bytes": [d.total_bytes for d in p.gpu_devices],
        "gpu_breakdown": [
            {"node": d.node, "device": d.device, "weights_bytes": d.weights_bytes, "kv_cache_bytes": d.kv_cache_bytes,
             "activation_bytes": d.activation_bytes, "overhead_bytes": d.overhead_bytes, "capacity_bytes": d.capacity_bytes}
            for d in p.gpu_devices
        ],
        "cpu_bytes": p.cpu_bytes,
        "disk_bytes": p.offload_disk_bytes,
        "host_ram_bytes": p.host_ram_bytes,
        "kv_cache_bytes": p.kv_cache_bytes,
        "decode_tokens_per_s": p.speed.decode_tokens_per_s,
        "prefill_tokens_per_s": p.speed.prefill_tokens_per_s,
        "throughput_tokens_per_s": p.speed.throughput_tokens_per_s,
        "load_seconds": p.speed.load_seconds,
        "job_seconds": round(p.speed.job_seconds(p.workload.requests), 1),
        "gpu_hours": round(p.speed.job_seconds(p.workload.requests) * p.gpus * p.nodes / 3600, 3),
        "conditions": list(p.conditions),
        **_vllm_summary(p),
    }


def _vllm_summary(p: Plan) -> dict:
    """vLLM's parallel shape and KV pool (null for transformers plans): TP/PP sizes, the KV tokens the engine will
    report, the requests of max_model_len tokens it holds at once, and the vLLM version modelled."""
    v = p.vllm
    return {"tensor_parallel_size": v.tensor_parallel_size if v else None,
            "pipeline_parallel_size": v.pipeline_parallel_size if v else None,
            "kv_cache_tokens": v.kv_cache_tokens if v else None, "max_concurrency": v.max_concurrency if v else None,
            "vllm_version": v.version if v else None}


def engine_comparison(report) -> list[dict]:
    """Per model checked with more than one engine: each engine's status, job seconds and GPU-hours, and which one
    runs the workload faster (runnable plans only)."""
    by_model: dict[str, list] = {}
    for r in report.results:
        by_model.setdefault(r.spec.model_id, []).append(r.plan)
    out = []
    for model, plans in by_model.items():
        if len(plans) < 2:
            continue
        rows = {p.engine: {"status": p.status, "job_seconds": round(p.speed.job_seconds(p.workload.requests), 1),
                           "gpu_hours": round(p.speed.job_seconds(p.workload.requests) * p.gpus * p.nodes / 3600, 3),
                           "nodes": p.nodes, "gpus": p.gpus} for p in plans}
        ok = [p for p in plans if p.fits]
        fastest = min(ok, key=lambda p: p.speed.job_seconds(p.workload.requests)).engine if ok else None
        out.append({"model": model, "engines": rows, "faster_engine": fastest})
    return out


def check_report_dict(report) -> dict:
    models = []
    for r in report.results:
        p, s = r.plan, r.spec
        models.append({
            "model": s.model_id,
            "revision": s.revision,
            "source": s.source,
            "architecture": s.architecture,
            "params_total": s.params_total,
            "params_active": s.params_active,
            "checkpoint_bytes": s.checkpoint_bytes,
            "checkpoint_dtype": s.checkpoint_dtype_label,
            "kv_bytes_per_token": p.kv_bytes_per_token,
            "kv_cache_bytes": p.kv_cache_bytes,
            "plan": plan_summary(p),
            "alternatives": [plan_summary(a) for a in r.alternatives],
            "refused": [{"precision": c.precision, "reason": c.why_not} for c in r.refused],
            "suggestions": list(r.suggestions),
            "warnings": list(p.warnings),
            "notes": list(s.notes),
        })
    opts = report.options.search
    wl = opts.workload
    part = report.profile.partition(opts.partition)
    return {
        "models": models,
        "cluster": {"profile": report.profile.name, **part.summary(), "assumed": list(report.profile.assumed)},
        "workload": {"context_tokens": wl.context_tokens, "prompt_tokens": wl.prompt_tokens, "batch": wl.batch,
                     "max_new_tokens": wl.max_new_tokens, "requests": wl.requests,
                     "attn_implementation": wl.attn_implementation},
        "transformers": opts.transformers,
        "engine": opts.engine,
        "comparison": engine_comparison(report),
        "experiment": experiment_totals(report),
    }


def experiment_totals(report) -> dict:
    """Per engine: the runnable models' summed job seconds and GPU-hours for the workload, and what does not run."""
    out: dict[str, dict] = {}
    for r in report.results:
        p = r.plan
        e = out.setdefault(p.engine, {"job_seconds": 0.0, "gpu_hours": 0.0, "models": 0, "not_runnable": []})
        if not p.fits:
            e["not_runnable"].append(r.spec.model_id)
            continue
        sec = p.speed.job_seconds(p.workload.requests)
        e["job_seconds"] = round(e["job_seconds"] + sec, 1)
        e["gpu_hours"] = round(e["gpu_hours"] + sec * p.gpus * p.nodes / 3600, 3)
        e["models"] += 1
    return out
