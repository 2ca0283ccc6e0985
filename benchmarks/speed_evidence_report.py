"""Writes benchmarks/results/speed_evidence.md and .json from speed_evidence.evaluate() (tables only, no model)."""
from __future__ import annotations

import json
from pathlib import Path

HOW = "`.venv/bin/python benchmarks/speed_evidence.py`"


def _f(x, nd=2) -> str:
    if x is None:
        return "-"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _row(r: dict, reason: bool = False) -> str:
    prec = r["precision"] + (f" -> {r['vplan_precision']}" if r.get("vplan_precision") else "")
    lens = f"{r.get('prompt_tokens', '-')}/{r.get('new_tokens', '-')}"
    cells = [r["id"], r.get("vplan_gpu") or r["gpu"], r["model"], prec, _f(r.get("batch")), lens, r.get("metric", "-"),
             _f(r.get("measured_tokens_per_s"), 1), _f(r.get("predicted_tokens_per_s"), 1), _f(r.get("ratio")),
             r["source"]]
    if reason:
        cells.insert(-1, r.get("reason", ""))
    elif r.get("note"):
        cells[-1] = f"{cells[-1]} ({r['note']})"
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def markdown(res: dict, bound: float) -> str:
    inc, exc, vll = res["included"], res["excluded"], res["vllm"]
    ratios = [r["ratio"] for r in inc if "ratio" in r]
    worst = max(ratios + [1 / x for x in ratios], default=None)
    n_in = sum(1 for r in inc if "ratio" in r and 1 / bound <= r["ratio"] <= bound)
    kinds: dict[str, int] = {}
    for r in exc:
        kinds[r["exclusion"]] = kinds.get(r["exclusion"], 0) + 1
    head = ["# Speed evidence: vplan's plans against published transformers generate() measurements", "",
            f"Regenerate with {HOW} (the evidence: benchmarks/evidence/, README there). ratio = vplan tokens/s / "
            "measured tokens/s (above 1: vplan too fast). Metrics: decode = one sequence's tokens/s in the decode loop; "
            "generate = new tokens / generate() wall time (prefill included); prefill = prompt tokens/s of "
            "generate(max_new_tokens=1). Every prediction is the real planner's plan for that GPU, model, precision, "
            "batch and lengths.", "",
            f"**{len(inc)} transformers rows included, {n_in} within {bound}x; worst factor {_f(worst)}.** "
            f"Excluded (reasons below): {kinds.get('cannot plan', 0)} transformers rows vplan cannot plan (architecture, "
            f"precision or GPU unknown, or misread), {kinds.get('other software', 0)} that ran software a vplan plan does "
            f"not run (shown with their ratios), {kinds.get('other engine', 0)} rows of another engine. "
            f"{len(vll)} vLLM rows are listed for the vLLM predictor.", "",
            "## Summary per GPU x precision (included rows)", "",
            "| GPU | evidence precision | rows | min ratio | max ratio | worst row |", "|---|---|---|---|---|---|"]
    head += [f"| {s['gpu']} | {s['precision']} | {s['rows']} | {_f(s['min_ratio'])} | {_f(s['max_ratio'])} | {s['worst_id']} |"
             for s in res["summary"]]
    cols = "| id | GPU | model | precision (evidence -> vplan) | batch | prompt/new | metric | measured tok/s | vplan tok/s | ratio | source |"
    body = ["", "## transformers generate() rows", "", cols, "|" + "---|" * 11] + [_row(r) for r in inc]
    reasons: dict[str, int] = {}
    for r in exc:
        key = r["reason"].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    body += ["", "## Excluded rows", "", "Rows vplan cannot plan, or that ran software a vplan plan does not run. Where vplan "
             "can still plan the setup, its prediction and ratio are shown for information; they do not count.", "",
             "| reason | rows |", "|---|---|"] + [f"| {k} | {n} |" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    body += ["", cols.replace("| source |", "| why excluded | source |"), "|" + "---|" * 12] + [_row(r, True) for r in exc]
    body += ["", "## vLLM rows", "",
             "Predictions come from the engine's predictor: `speed_evidence.register(\"vllm\", fn)` with "
             "`fn(row) -> Prediction(tokens_per_s, status)` for the metric of `measured_vllm(row)`, registered from "
             "benchmarks/vllm_speed_evidence.py (rows whose model, GPU, precision or lengths it cannot plan have no "
             "prediction). Per-sequence decode under a flood of prompts is where it is weakest; the job's output tokens/s "
             "and the fixed-batch steps are compared in benchmarks/results/vllm_speed_evidence.md.", "",
             "| id | GPU | GPUs | model | precision | concurrency | metric | measured | vplan | ratio | source |",
             "|" + "---|" * 11]
    for r in vll:
        body.append("| " + " | ".join(str(c).replace("|", "/") for c in (
            r["id"], r["gpu"], r.get("num_gpus"), r["model"], r["precision"], _f(r.get("batch")), r.get("metric", "-"),
            _f(r.get("measured_tokens_per_s"), 1), _f(r.get("predicted_tokens_per_s"), 1), _f(r.get("ratio")), r["source"])) + " |")
    return "\n".join(head + body) + "\n"


def write_reports(res: dict, out: Path, bound: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed_evidence.json").write_text(json.dumps({"bound": bound, **res}, indent=1) + "\n")
    (out / "speed_evidence.md").write_text(markdown(res, bound))
