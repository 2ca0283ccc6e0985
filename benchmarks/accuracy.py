"""The planner's analytic peak held to the simulator, for every catalog model in the simulator's scope.

    python benchmarks/accuracy.py                 # full sweep: prompts 512/4096/32768 x sdpa/eager, batch 1, bf16
    python benchmarks/accuracy.py --prompts 4096  # a subset
    python benchmarks/accuracy.py --report-only   # re-predict with the current planner, rewrite the tables

Writes benchmarks/results/accuracy.json (a row is appended as soon as it is simulated, so a cut run
resumes where it stopped) and benchmarks/results/accuracy.md. Predicted = weights + prompt KV +
activations from vplan.planner (activations.predicted_peak_tensor_bytes), never from simulated numbers.
Bound: within 2 % of the simulated peak and never below it by more than 1 %.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from vplan.planner.memory import activations
from vplan.planner.model import build_spec
from vplan.planner.model.behaviours import behaviour
from vplan.planner.source.catalog import list_ids, load

OUT = Path(__file__).parent / "results"
FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "configs"  # shapes not in the catalog (gemma,
# multimodal families: benchmarks/multimodal_fixtures.py writes those from transformers' config classes)
PROMPTS = (512, 4096, 32768)
ATTNS = ("sdpa", "eager")
# same sizes as a swept twin (base/instruct, re-uploads) or outside the simulator's scope (GPTQ kernels)
SKIP = {"Qwen/Qwen2.5-72B": "twin of Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-7B": "twin of Qwen2.5-7B-Instruct",
        "meta-llama/Llama-3.1-8B": "twin of Llama-3.1-8B-Instruct",
        "meta-llama/Llama-3.1-70B-Instruct": "twin of Llama-3.3-70B-Instruct",
        "jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment": "twin of Llama-3.1-8B-Instruct",
        "Qwen/Qwen3-32B-FP8": "simulated only as bf16 = Qwen3-32B",
        "TheBloke/Wizard-Vicuna-30B-Uncensored-GPTQ": "GPTQ kernels cannot run on fake tensors"}
UPPER, LOWER = 2.0, -1.0  # percent


def config_of(mid: str) -> dict:
    """Catalog model id, or 'fixture:NAME' for tests/fixtures/configs/NAME.json."""
    if mid.startswith("fixture:"):
        cfg = json.loads((FIXTURES / f"{mid.split(':', 1)[1]}.json").read_text())
        return {k: v for k, v in cfg.items() if k != "_comment"}
    return load(mid)["config"]


def predicted(mid: str, prompt: int, attn: str, transformers: str) -> dict:
    """The planner's prediction for the transformers version the row was simulated with."""
    cfg = {k: v for k, v in config_of(mid).items() if k != "quantization_config"}  # simulated as bf16
    spec = build_spec(mid, None, "config", cfg, None, transformers=transformers)
    return activations.predicted_peak_tensor_bytes(spec, batch=1, prompt_tokens=prompt, attn_implementation=attn)


def cases(models: list[str] | None, prompts, transformers: str) -> list[tuple[str, int, str]]:
    ids = models or [m for m in list_ids() if m not in SKIP] + [f"fixture:{f.stem}" for f in sorted(FIXTURES.glob("*.json"))]
    out = []
    for mid in ids:
        eager_only = config_of(mid).get("model_type") in behaviour("eager_only", transformers)
        out += [(mid, p, a) for p in prompts for a in ATTNS if not (eager_only and a == "sdpa")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*")
    ap.add_argument("--prompts", nargs="*", type=int, default=list(PROMPTS))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--json", type=Path, default=OUT / "accuracy.json", help="rows file (to split a sweep)")
    ap.add_argument("--merge", nargs="*", type=Path, default=[], help="rows files of split sweeps to merge in")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = a.json
    data = json.loads(path.read_text()) if path.exists() else {}
    rows = data.get("rows", []) + data.get("fixture_rows", [])
    for extra in a.merge:
        have = {(r["model"], r["prompt_tokens"], r["attn"]) for r in rows}
        more = json.loads(extra.read_text())
        rows += [r for r in more["rows"] + more.get("fixture_rows", []) if (r["model"], r["prompt_tokens"], r["attn"]) not in have]
    if not a.report_only:
        import transformers

        from vplan.runtime.sim.simulate import simulate

        done = {(r["model"], r["prompt_tokens"], r["attn"]) for r in rows}
        for mid, prompt, attn in cases(a.models, a.prompts, transformers.__version__):
            if (mid, prompt, attn) in done:
                continue
            r = simulate(config_of(mid), batch=1, prompt_tokens=prompt, new_tokens=16, attn_implementation=attn)
            rows.append({"model": mid, "attn": attn, "prompt_tokens": prompt, "transformers": transformers.__version__,
                         "simulated_bytes": r.peak_bytes,
                         "simulated_breakdown": r.breakdown, "phase": r.where.get("phase"),
                         "where": f"{r.where.get('module')} :: {r.where.get('op')}", "sim_seconds": r.elapsed_s,
                         "max_rss_bytes": r.max_rss_bytes, "notes": list(r.notes)})
            _score(rows[-1])
            _save(path, platform.platform(), time.strftime("%Y-%m-%d"), rows)
            print(json.dumps({k: rows[-1][k] for k in ("model", "attn", "prompt_tokens", "error_pct", "sim_seconds")}),
                  flush=True)
    for r in rows:
        _score(r)
    _save(path, data.get("machine", platform.platform()), data.get("date", time.strftime("%Y-%m-%d")), rows)
    if path == OUT / "accuracy.json":
        write_md(rows)


def _save(path: Path, machine: str, date: str, rows: list[dict]) -> None:
    """Catalog rows under "rows" (tests re-predict them from the catalog), fixture shapes under "fixture_rows"."""
    fx = [r for r in rows if r["model"].startswith("fixture:")]
    path.write_text(json.dumps({"machine": machine, "date": date, "rows": [r for r in rows if r not in fx],
                                "fixture_rows": fx}, indent=1))


def _score(row: dict) -> None:
    p = predicted(row["model"], row["prompt_tokens"], row["attn"], row["transformers"])
    row.update(predicted_bytes=p["peak_bytes"], predicted_breakdown={k: p[k] for k in ("weights", "kv", "activations")},
               error_pct=round(100 * (p["peak_bytes"] - row["simulated_bytes"]) / row["simulated_bytes"], 3))
    row["within_bounds"] = LOWER <= row["error_pct"] <= UPPER


def write_md(rows: list[dict]) -> None:
    gib = 2**30
    lines = ["# Planner vs simulator: peak tensor memory of generate()", "",
             "Batch 1, bf16, prompt + 16 new tokens, SDPA routed as on an H100, 512-byte rounding, tensor memory only",
             "(no CUDA context, workspaces or fragmentation). Predicted = weights + prompt KV + analytic activations",
             "(vplan.planner.memory.activations.predicted_peak_tensor_bytes, for the transformers version of the row);",
             "simulated = runtime/sim/simulate.py.",
             f"Bound: error within [{LOWER:+.0f} %, {UPPER:+.0f} %]. Regenerate: `python benchmarks/accuracy.py`",
             "(resumes; delete accuracy.json to start over; `--report-only` re-predicts without simulating).", "",
             "| model | attn | prompt | predicted act. | simulated act. | predicted peak | simulated peak | error | ok | phase | where |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["model"], r["attn"], r["prompt_tokens"])):
        pb, sb = r["predicted_breakdown"], r.get("simulated_breakdown", {})
        lines.append(f"| {r['model']} | {r['attn']} | {r['prompt_tokens']} | {pb['activations'] / gib:.3f} GiB | "
                     f"{sb.get('activations', 0) / gib:.3f} GiB | {r['predicted_bytes']:,} | {r['simulated_bytes']:,} | "
                     f"{r['error_pct']:+.3f} % | {'yes' if r['within_bounds'] else 'NO'} | {r['phase']} | {r['where']} |")
    if rows:
        worst = max(rows, key=lambda r: abs(r["error_pct"]))
        lines += ["", f"{len(rows)} cases, {sum(r['within_bounds'] for r in rows)} within bounds. Worst error: "
                  f"{worst['error_pct']:+.3f} % ({worst['model']}, {worst['attn']}, {worst['prompt_tokens']}). "
                  f"Slowest simulation {max(r['sim_seconds'] for r in rows):.1f} s; "
                  f"max RSS {max(r['max_rss_bytes'] for r in rows) / 2**20:.0f} MiB (sweep process)."]
    versions = sorted({r["transformers"] for r in rows})
    lines += ["", f"Simulated with transformers {', '.join(versions)}; each row is predicted for its own version.",
              "Rows named `fixture:NAME` use tests/fixtures/configs/NAME.json: gemma shapes written from the public "
              "config.json files (not in the bundled catalog), and the multimodal configs benchmarks/"
              "multimodal_fixtures.py writes from transformers' own config classes (`<family>-default`: the class "
              "defaults; the others: published layouts through the same classes), planned from config.json alone "
              "and simulated as the runtime loads them (the whole model, or Llama 4's text model). gemma2 and gpt-oss "
              "have no sdpa path in transformers 5: eager only."]
    lines += ["", "Not swept: " + "; ".join(f"{k} ({v})" for k, v in SKIP.items()) + "."]
    (OUT / "accuracy.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
