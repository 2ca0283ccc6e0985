"""vplan's vLLM speed model against published vLLM measurements: one ratio (predicted / published) per row.

    .venv/bin/python benchmarks/vllm_speed_evidence.py          # writes benchmarks/results/vllm_speed_evidence.md

Rows: the vLLM rows (engine "vllm") of benchmarks/evidence/speed_rows.json (public sources, each with its quote). ``predict_vllm(row)`` is the predictor a
harness looks up for engine "vllm": it rebuilds the row's setup as a vLLM plan (the model from vplan's offline
catalog, the GPU from the catalog, TP = the row's GPUs, the row's precision) and predicts the row's metric:

- ``derived_ms_per_step`` (fixed batch, vLLM's latency benchmark) and ``tpot_ms_mean`` at a stated concurrency:
  the time between two tokens of a sequence with that many sequences decoding;
- ``output_tokens_per_s_aggregate`` of `vllm bench serve` with every prompt sent at once: generated tokens over
  the whole run (prefill included) at the concurrency the engine reaches (max_num_seqs and the KV pool).

Rows whose model has no offline spec, whose GPU is not in the catalog or is ambiguous, or whose lengths are not
stated are listed as skipped with the reason. The speed constants were set with these rows in view (no GPU was
available to check them otherwise): the ratios describe the model's fit, they are not a held-out test.
"""
from __future__ import annotations

import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROWS = os.path.join(HERE, "evidence", "speed_rows.json")  # every published row; engine "vllm" here
OUT = os.path.join(HERE, "results", "vllm_speed_evidence.md")

# Published model ids -> the catalog model with the same architecture and shapes (a stated proxy when not equal).
MODELS = {
    "openai/gpt-oss-20b": "openai/gpt-oss-20b",
    "Qwen/Qwen3-32B": "Qwen/Qwen3-32B",
    "Qwen/Qwen3-32B-FP8": "Qwen/Qwen3-32B-FP8",
    "Qwen/Qwen3-8B": "Qwen/Qwen3-8B",
    "meta-llama/Meta-Llama-3-8B": "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
    "meta-llama/Meta-Llama-3-70B-Instruct": "meta-llama/Llama-3.1-70B-Instruct",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mistralai/Mixtral-8x7B-v0.1",
}
GPUS = {"A100-80GB-SXM": "A100-80GB", "H100-80GB-SXM": "H100-80GB", "H200-141GB-SXM": "H200",
        "H100-NVL-94GB": "H100-NVL"}
PRECISIONS = {"bf16": "bf16", "mxfp4-moe": "mxfp4", "fp8": "fp8"}


def _tokens(value) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    m = re.match(r"avg ([0-9.]+)", str(value or ""))
    return float(m.group(1)) if m else None


def _model(row) -> str | None:
    mid = str(row.get("model_id", "")).split(" (")[0]
    return MODELS.get(mid)


def _metric(row) -> tuple[str, float] | None:
    for key in ("derived_ms_per_step", "output_tokens_per_s_aggregate"):
        if isinstance(row.get(key), (int, float)):
            return key, float(row[key])
    return None


def plan_for_row(row: dict):
    """The vLLM plan of the setup a row measured (TP = its GPUs, its precision, lengths and concurrency), or the
    reason it cannot be planned here (a string)."""
    from vplan.planner.api import CheckOptions, check_engines
    from vplan.planner.hardware.cluster import profile_for_gpu
    from vplan.planner.plan.contract import Workload
    from vplan.planner.search import vllm as search
    from vplan.planner.search.core import SearchOptions

    model, gpu = _model(row), GPUS.get(row.get("gpu", ""))
    prec = PRECISIONS.get(str(row.get("precision")))
    prompt, new = _tokens(row.get("prompt_tokens")), _tokens(row.get("generated_tokens"))
    why = ("model has no offline spec" if model is None else "GPU not in the catalog or ambiguous" if gpu is None
           else "precision not modelled here" if prec is None else "lengths not stated" if not (prompt and new)
           else None)
    if why:
        return why
    n = int(row.get("num_gpus") or 1)
    fixed = row.get("batch_size") or (row["concurrency"] if isinstance(row.get("concurrency"), (int, float)) else None)
    cap = re.search(r"max-num-seqs ([0-9]+)", str(row.get("concurrency") or ""))
    fixed = fixed or (int(cap.group(1)) if cap else None)  # a server cap bounds the sequences decoded together
    requests = int(fixed or row.get("num_prompts") or 1)  # the job's concurrency is min(requests, max_num_seqs, KV)
    prompt_i, new_i = max(1, round(prompt)), max(1, round(new))
    wl = Workload(context_tokens=max(4096, prompt_i + new_i), prompt_tokens=prompt_i, max_new_tokens=new_i,
                  batch=1, requests=requests)
    profile = profile_for_gpu(gpu, n, nodes=1)
    opts = CheckOptions(offline=True, suggest=False, search=SearchOptions(workload=wl, engine="vllm", precision=prec))
    spec = check_engines(model, profile, opts)[0].spec
    plan = search.build_candidate(spec, profile, profile.partition(), prec, search.Shape(n, 1, 1, n), opts.search)
    return plan if plan.status == "fits" else f"vplan's plan does not fit: {plan.reason}"


def predict_vllm(row: dict) -> dict:
    """{"metric", "published", "predicted", "ratio", ...} or {"skipped": why} for one evidence row of engine "vllm":
    ms per decode step at a fixed batch, else a serving run's output tokens/s."""
    metric = _metric(row)
    plan = plan_for_row(row) if metric else "no metric this predictor covers"
    if isinstance(plan, str):
        return {"skipped": plan}
    key, published = metric
    # decode_tokens_per_s is one sequence's rate at the job's concurrency; throughput is the job's output tokens/s
    predicted = 1e3 / plan.speed.decode_tokens_per_s if key == "derived_ms_per_step" else plan.speed.throughput_tokens_per_s
    return {"metric": key, "published": published, "predicted": round(predicted, 3), "ratio": round(predicted / published, 3),
            "model": plan.model_id, "gpu": plan.gpu_type, "gpus": plan.gpus, "precision": plan.precision}


HARNESS_DECODE_KEYS = ("tpot_ms_median", "tpot_ms_mean", "itl_fit_intercept_ms", "derived_ms_per_step")
HARNESS_RUN_KEYS = ("output_tokens_per_s_aggregate",)


def harness_prediction(row: dict) -> dict | None:
    """For the speed-evidence harness (benchmarks/speed_evidence.py, ``register("vllm", ...)``): the fields of its
    ``Prediction`` (tokens_per_s, status, detail) in the metric its ``measured_vllm`` reads -- one sequence's
    decode tokens/s when the row has a TPOT, an ITL intercept or ms per step, else the run's output tokens/s."""
    decode = any(isinstance(row.get(k), (int, float)) and row[k] > 0 for k in HARNESS_DECODE_KEYS)
    if not decode and not any(isinstance(row.get(k), (int, float)) for k in HARNESS_RUN_KEYS):
        return None
    plan = plan_for_row(row)
    if isinstance(plan, str):
        return None
    v = plan.vllm
    value = plan.speed.decode_tokens_per_s if decode else plan.speed.throughput_tokens_per_s
    return {"tokens_per_s": value, "status": plan.status,
            "detail": {"engine": "vllm", "tp": v.tensor_parallel_size, "precision": plan.precision,
                       "kv_cache_tokens": v.kv_cache_tokens, "max_num_seqs": v.max_num_seqs}}


def main() -> None:
    rows = [r for r in json.load(open(ROWS)) if r.get("engine") == "vllm"]
    done, skipped = [], []
    for r in rows:
        res = predict_vllm(r)
        (skipped if "skipped" in res else done).append((r, res))
    lines = ["# vLLM speed: vplan's model against published measurements", "",
             f"Generated by `benchmarks/vllm_speed_evidence.py` from {len(rows)} published vLLM rows "
             f"(engine `vllm` in `benchmarks/evidence/speed_rows.json`); {len(done)} compared, {len(skipped)} skipped.",
             "Ratio = predicted / published (above 1: vplan predicts faster; for ms per step, above 1 means slower).", ""]
    for key, title in (("derived_ms_per_step", "Time per decode step at a fixed batch (ms)"),
                       ("output_tokens_per_s_aggregate", "Output tokens/s of a serving run, all prompts at once")):
        sel = [(r, x) for r, x in done if x["metric"] == key]
        if not sel:
            continue
        ratios = [x["ratio"] for _, x in sel]
        lines += [f"## {title}", "", f"{len(sel)} rows; ratio median {statistics.median(ratios):.2f}, "
                  f"min {min(ratios):.2f}, max {max(ratios):.2f}.", "",
                  "| row | model (as planned) | GPUs | precision | prompt/new | batch or prompts | published | vplan | ratio | vLLM |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r, x in sel:
            n = r.get("batch_size") or r.get("concurrency") or r.get("num_prompts")
            lines.append(f"| {r['id']} | {x['model']} | {x['gpus']} x {x['gpu']} | {x['precision']} | "
                         f"{_tokens(r['prompt_tokens']):.0f}/{_tokens(r['generated_tokens']):.0f} | {n} | "
                         f"{x['published']:g} | {x['predicted']:g} | {x['ratio']:.2f} | {r.get('engine_version')} |")
        lines.append("")
    tpot = []
    for r in rows:
        key = next((k for k in ("tpot_ms_median", "tpot_ms_mean") if isinstance(r.get(k), (int, float))), None)
        h = harness_prediction(r) if key else None
        if h:
            tpot.append((r, key, h["tokens_per_s"] / (1e3 / r[key])))
    if tpot:
        ratios = sorted(x for _, _, x in tpot)
        light = [x for r, _, x in tpot if isinstance(r.get("concurrency"), (int, float))]
        lines += ["## Per-sequence decode against the published TPOT (the speed harness's headline metric)", "",
                  f"{len(tpot)} rows; ratio median {statistics.median(ratios):.2f}, min {ratios[0]:.2f}, max "
                  f"{ratios[-1]:.2f}; at a stated low concurrency (1-8) {len(light)} rows, median "
                  f"{statistics.median(light) if light else float('nan'):.2f}. vplan's per-sequence rate includes the "
                  "other sequences' prefills scheduled between a sequence's steps, spread over its new tokens; with "
                  "4 new tokens per request and 1000 prompts at once that spreads a whole queue of prefills over 3 "
                  "intervals, far more than a published TPOT shows (the low ratios).", "",
                  "| row | model | GPUs | prompt/new | load | published TPOT ms | vplan ms | ratio (tokens/s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r, key, x in tpot:
            n = r.get("batch_size") or r.get("concurrency") or r.get("num_prompts")
            lines.append(f"| {r['id']} | {_model(r)} | {r.get('num_gpus')} x {GPUS.get(r['gpu'])} | "
                         f"{_tokens(r['prompt_tokens']):.0f}/{_tokens(r['generated_tokens']):.0f} | {n} | {r[key]:g} | "
                         f"{r[key] / x:.1f} | {x:.2f} |")
        lines.append("")
    reasons: dict[str, int] = {}
    for _, x in skipped:
        reasons[x["skipped"].split(":")[0]] = reasons.get(x["skipped"].split(":")[0], 0) + 1
    lines += ["## Skipped rows", ""] + [f"- {why}: {n}" for why, n in sorted(reasons.items())] + [""]
    lines += ["Sources: every row's `source` and verbatim `quote` are in the rows file; the speed harness "
              "(benchmarks/speed_evidence.py) lists the same rows with their sources in speed_evidence.md."]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
