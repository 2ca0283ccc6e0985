"""The planner's analytic peak held to the simulator, for every catalog model in the simulator's scope.

    python benchmarks/accuracy.py            # full sweep: prompts 512/4096/32768 x sdpa/eager
    python benchmarks/accuracy.py --quick    # one prompt length

Writes benchmarks/results/accuracy.json (rows appended as they finish, so a cut run resumes) and
benchmarks/results/accuracy.md. Bound: predicted within 2 % of simulated, never below by more than 1 %.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from vplan.planner import activations, memory
from vplan.planner.catalog import list_ids, load
from vplan.planner.model import build_spec

OUT = Path(__file__).parent / "results"
# one config per distinct architecture shape (base/instruct twins share every size)
SKIP = {"Qwen/Qwen2.5-72B", "Qwen/Qwen2.5-7B", "meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B-Instruct",
        "Qwen/Qwen3-32B-FP8", "jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment",
        "TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ"}


def predicted(mid: str, prompt: int, attn: str) -> int:
    cfg = dict(load(mid)["config"])
    cfg.pop("quantization_config", None)
    spec = build_spec(mid, None, "catalog", cfg, None)
    return (memory.weight_bytes(spec, "bf16") + memory.kv_cache_bytes(spec, prompt, 1, 2)
            + activations.activation_peak_bytes_for_spec(spec, batch=1, prompt_tokens=prompt, attn_implementation=attn))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--report-only", action="store_true", help="rewrite accuracy.md from accuracy.json")
    a = ap.parse_args()
    path = OUT / "accuracy.json"
    if a.report_only:  # re-predict with the current planner; simulated bytes are kept
        data = json.loads(path.read_text())
        for r in data["rows"]:
            r["predicted_bytes"] = predicted(r["model"], r["prompt_tokens"], r["attn"])
            r["error_pct"] = round(100 * (r["predicted_bytes"] - r["simulated_bytes"]) / r["simulated_bytes"], 3)
        path.write_text(json.dumps(data, indent=1))
        write_md(data["rows"])
        return
    from vplan.runtime.simulate import simulate

    prompts = (4096,) if a.quick else (512, 4096, 32768)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    done = {(r["model"], r["attn"], r["prompt_tokens"]) for r in rows}
    ids = a.models or [m for m in list_ids() if m not in SKIP]
    for mid in ids:
        for prompt in prompts:
            for attn in ("sdpa", "eager"):
                key = (mid, attn, prompt)
                cfg = load(mid)["config"]
                if key in done or (cfg.get("model_type") == "gpt_oss" and attn == "sdpa"):
                    continue
                r = simulate(cfg, batch=1, prompt_tokens=prompt, new_tokens=16, attn_implementation=attn)
                pred = predicted(mid, prompt, attn)
                rows.append({"model": mid, "attn": attn, "prompt_tokens": prompt, "predicted_bytes": pred,
                             "simulated_bytes": r.peak_bytes, "error_pct": round(100 * (pred - r.peak_bytes) / r.peak_bytes, 3),
                             "phase": r.where.get("phase"), "where": f"{r.where.get('module')} :: {r.where.get('op')}",
                             "sim_seconds": r.elapsed_s, "max_rss_bytes": r.max_rss_bytes})
                path.write_text(json.dumps({"machine": platform.platform(), "rows": rows}, indent=1))
                print(json.dumps(rows[-1]), flush=True)
    write_md(rows)


def write_md(rows: list[dict]) -> None:
    lines = ["# Planner vs simulator: peak tensor memory of generate()", "",
             "Batch 1, bf16, 16 new tokens, SDPA routed as on an H100, 512-byte rounding. Regenerate with",
             "`python benchmarks/accuracy.py` (resumes; delete accuracy.json to start over).", "",
             "| model | attn | prompt | predicted bytes | simulated bytes | error | peak phase | where |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["attn"], r["prompt_tokens"])):
        lines.append(f"| {r['model']} | {r['attn']} | {r['prompt_tokens']} | {r['predicted_bytes']:,} | "
                     f"{r['simulated_bytes']:,} | {r['error_pct']:+.3f} % | {r['phase']} | {r['where']} |")
    worst = max(rows, key=lambda r: abs(r["error_pct"]), default=None)
    if worst:
        lines += ["", f"Worst error: {worst['error_pct']:+.3f} % ({worst['model']}, {worst['attn']}, {worst['prompt_tokens']})."
                  f" Slowest simulation: {max(r['sim_seconds'] for r in rows):.1f} s;"
                  f" max RSS {max(r['max_rss_bytes'] for r in rows) / 2**20:.0f} MiB."]
    ref = json.loads((Path(__file__).parent.parent / "tests" / "fixtures" / "sim_reference.json").read_text())
    lines += ["", "## Recorded reference peaks (tests/fixtures/sim_reference.json), same planner", "",
              "| model | attn | prompt | predicted bytes | reference bytes | error |", "|---|---|---:|---:|---:|---:|"]
    for r in ref["rows"]:
        pred = predicted(r["model"], r["prompt_tokens"], r["attn"])
        lines.append(f"| {r['model']} | {r['attn']} | {r['prompt_tokens']} | {pred:,} | {r['peak_bytes']:,} | "
                     f"{100 * (pred - r['peak_bytes']) / r['peak_bytes']:+.3f} % |")
    (OUT / "accuracy.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
