"""vplan's speed model against every published transformers generate() measurement in benchmarks/evidence/.

    .venv/bin/python benchmarks/speed_evidence.py        # writes benchmarks/results/speed_evidence.{md,json}

Each evidence row (benchmarks/evidence/speed_rows.json: GPU, model, precision, batch, lengths, the published
figure, its source and a verbatim quote) is turned into the setup it measured -- a one-partition cluster
profile with that GPU, the model's config, the precision forced, the row's batch and lengths -- and planned by
the real planner (vplan.planner.api.check_one). The plan's tokens/s is compared with the measured one:
ratio = predicted / measured (above 1: vplan is too fast). Rows vplan cannot plan, or that ran software a vplan
plan does not run, are listed apart with the reason (``classify``); they never count towards the 1.5x bound.

Engines: a row's predictor is ``PREDICTORS[row["engine"]]``. transformers is registered here; a vLLM
predictor is registered with ``register("vllm", fn)`` where ``fn(row) -> Prediction | None`` (see
``predict_transformers`` for the shape); until then the vLLM rows are listed with their measurements only.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vplan.planner.api import CheckOptions, check_one
from vplan.planner.errors import VplanError
from vplan.planner.hardware.cluster import ClusterProfile, Partition
from vplan.planner.hardware.gpus import GPU_CATALOG, SMI_GAP_BYTES, GpuSpec
from vplan.planner.plan.contract import Workload
from vplan.planner.search.core import SearchOptions
from vplan.planner.units import GB, GB_S, MIB

HERE = Path(__file__).resolve().parent
EVIDENCE = HERE / "evidence"
RESULTS = HERE / "results"
BOUND = 1.5  # every included row within this factor, either way
TRANSFORMERS = "transformers-generate"

GPU_OF = {"H100-80GB-SXM": "H100-80GB", "A100-80GB-SXM": "A100-80GB", "A100-80GB (SXM/PCIe unstated)": "A100-80GB",
          "A100-40GB (SXM/PCIe unstated)": "A100-40GB", "A10G-24GB": "A10", "A10-24GB": "A10",
          # vplan reads a bare "A100" as its catalog alias: the 40 GB card (planner/hardware/gpus.py)
          "A100 (memory size unstated)": "A100-40GB"}
PROXY_NF4 = {"bnb-nf4-dq": "planned as nf4: vplan does not plan double quantization (bnb_4bit_use_double_quant)",
             "bnb-fp4": "planned as nf4: bitsandbytes runs fp4 and nf4 through the same 4-bit kernels (another code table)"}
PRECISION_OF = {"bf16": "bf16", "fp16": "fp16", "fp32": "fp32", "bnb-nf4": "nf4", "bnb-nf4-dq": "nf4", "bnb-fp4": "nf4",
                "bnb-int8-threshold0": "int8-nodecomp", "bnb-llm.int8-threshold6": "int8", "gptq-int4": "gptq-int4"}
ARCH_NOT_MODELLED = {
    "bigscience/bloom": "BLOOM (model_type bloom) is not an architecture vplan models (planner/model/architectures.py)",
    "EleutherAI/gpt-j-6B": "GPT-J (model_type gptj) is not an architecture vplan models",
    "EleutherAI/gpt-neox-20b": "GPT-NeoX (model_type gpt_neox) is not an architecture vplan models",
    "facebook/opt-30b": "OPT (model_type opt) is not an architecture vplan models",
    "bigscience/T0pp": "encoder-decoder (T5): vplan plans decoder-only generate()",
    "t5-11b": "encoder-decoder (T5): vplan plans decoder-only generate()",
    "t5-3b": "encoder-decoder (T5): vplan plans decoder-only generate()"}
MISREAD = {i: "a second parse of the same published row with one column shifted (value 1.0 where the table says "
              "1209.07/1280.25/1533.54 ms); the correct reading is the row named" for i in ("E0155", "E0156", "E0157")}
MISREAD_TWIN = {"E0155": "E0168", "E0156": "E0170", "E0157": "E0171"}
# AutoGPTQ kernels gptqmodel never picks for a 4-bit sym checkpoint on sm80: its auto order is Machete (sm90),
# Marlin, ExllamaV2, Exllama v1, ...; the old CUDA kernel is commented out of the order
# (ModelCloud/GPTQModel gptqmodel/utils/importer.py AUTO_SELECT_BACKEND_ORDER_MAP)
GPTQ_NOT_SELECTED = ("cuda-old", "autogptq-cuda-old", "exllama", "exllamav2", "exllama_v2")


@dataclass(frozen=True)
class Setup:
    ref: str  # what check_one resolves: a catalog id or a config folder
    gpu: GpuSpec
    gpus: int
    precision: str
    workload: Workload
    metric: str  # "decode" | "generate" | "prefill"
    note: str = ""


@dataclass(frozen=True)
class Prediction:
    tokens_per_s: float
    status: str  # the plan's status ("fits", ...)
    detail: dict = field(default_factory=dict)


Predictor = Callable[[dict], "Prediction | None"]
PREDICTORS: dict[str, Predictor] = {}


def register(engine: str, fn: Predictor) -> None:
    PREDICTORS[engine] = fn


def load_rows() -> list[dict]:
    return json.loads((EVIDENCE / "speed_rows.json").read_text())


def _json(name: str) -> dict:
    return json.loads((EVIDENCE / name).read_text())


def gpu_spec(evidence_gpu: str) -> GpuSpec | None:
    if evidence_gpu in GPU_OF:
        return GPU_CATALOG[GPU_OF[evidence_gpu]]
    d = _json("gpus.json").get(evidence_gpu)
    if d is None:
        return None
    return GpuSpec(d["name"], d["nvidia_smi_mib"] * MIB - SMI_GAP_BYTES, int(d["hbm_gb_s"] * GB_S),
                   tuple(d["compute_capability"]), d["bf16"], d["fp8"], float(d["tflops"]), int(d["host_link_gb_s"] * GB_S),
                   int(d["host_link_gb_s"] * GB_S), (), d["source"])


def model_ref(model_id: str) -> str | None:
    m = _json("models.json").get(model_id)
    if m is None:
        return None
    kind, _, what = m["ref"].partition(":")
    return what if kind == "catalog" else str(EVIDENCE / m["ref"])


def bnb_version(row: dict) -> tuple[int, ...] | None:
    v = str((row.get("library_versions") or {}).get("bitsandbytes", ""))
    head = v.split(".dev")[0].split(" ")[0]
    try:
        return tuple(int(x) for x in head.split("."))
    except ValueError:
        return None


def metric_of(row: dict) -> str | None:
    if row.get("prefill_latency_ms") is not None:
        return "prefill"
    if row.get("per_token_latency_ms") is None:
        return None
    pub = row.get("metric_as_published", "")
    return "generate" if ("wall" in pub or "bar label" in pub) else "decode"


def classify(row: dict) -> tuple[Setup | None, str]:
    """The setup a transformers row measured, and why it is excluded ("" when it is included). A setup with a
    reason is still planned (for information) where vplan can plan it."""
    if row["engine"] != TRANSFORMERS:
        return None, f"engine {row['engine']!r}: not transformers generate()"
    if row["id"] in MISREAD:
        return None, f"{MISREAD[row['id']]} {MISREAD_TWIN[row['id']]}"
    if row["model_id"] in ARCH_NOT_MODELLED:
        return None, ARCH_NOT_MODELLED[row["model_id"]]
    gpu = gpu_spec(row["gpu"])
    if gpu is None:
        return None, f"GPU not named by the source ({row['gpu']})"
    if row["precision"] not in PRECISION_OF:
        return None, f"{row['precision']}: not a precision vplan plans (optimum-quanto is not a vplan precision)"
    ref = model_ref(row["model_id"])
    metric = metric_of(row)
    if ref is None or metric is None:
        return None, "no model config or no per-token figure for this row"
    prompt = max(1, int(row["prompt_tokens"]))
    new = max(1, int(row["generated_tokens"]))
    wl = Workload(context_tokens=prompt + new, prompt_tokens=prompt, max_new_tokens=new, batch=int(row["batch_size"]))
    setup = Setup(ref, gpu, int(row["num_gpus"]), PRECISION_OF[row["precision"]], wl, metric, PROXY_NF4.get(row["precision"], ""))
    reason = ""
    ver = bnb_version(row)
    if "int8" in row["precision"] and (ver is None or ver < (0, 45)):
        used = ver and (row.get("library_versions") or {}).get("bitsandbytes")
        reason = (f"LLM.int8 with bitsandbytes {used or 'of 2022-2023 (release unstated)'}: "
                  "0.45 rewrote the int8 matmul (its own table: 0.44.1 is 1.6-1.8x slower, E0033/E0034, E0035/E0036) "
                  "and vplan's int8 plans require bitsandbytes >= 0.45")
    elif (kernel := row.get("precision_detail", "").rpartition("kernel=")[2]) in GPTQ_NOT_SELECTED:
        reason = (f"AutoGPTQ {kernel} kernel: vplan's gptq plans load through "
                  "gptqmodel, whose automatic choice for this checkpoint on this GPU is Marlin")
    return setup, reason


def predict_transformers(row: dict) -> Prediction | None:
    setup, _ = classify(row)
    if setup is None:
        return None
    part = Partition(name="evidence", gpu=setup.gpu, gpus_per_node=setup.gpus, cpus_per_node=8 * setup.gpus,
                     mem_bytes=512 * GB)
    profile = ClusterProfile(name="evidence", partitions=(part,), default_partition="evidence")
    opts = CheckOptions(search=SearchOptions(workload=setup.workload, precision=setup.precision, max_gpus=setup.gpus,
                                             no_offload=True), offline=True, suggest=False)
    try:
        plan = check_one(setup.ref, profile, opts).plan
    except VplanError as e:
        return Prediction(0.0, f"error: {e}")
    sp, wl = plan.speed, setup.workload
    value = {"decode": sp.decode_tokens_per_s, "prefill": sp.prefill_tokens_per_s,
             "generate": wl.max_new_tokens / (sp.seconds_per_request * wl.batch)}[setup.metric]
    return Prediction(value, plan.status, {"gpus": plan.gpus, "precision": plan.precision})


register(TRANSFORMERS, predict_transformers)


def predict_vllm(row: dict) -> Prediction | None:
    """vLLM rows: the vLLM plan of the row's setup (benchmarks/vllm_speed_evidence.py, harness_prediction)."""
    import importlib.util

    name = "vllm_speed_evidence"
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        mod = sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    d = mod.harness_prediction(row)
    return Prediction(**d) if d else None


register("vllm", predict_vllm)


def measured(row: dict) -> tuple[str, float] | None:
    """(metric, tokens/s) as published: per sequence for decode/generate, all prompt tokens for prefill."""
    metric = metric_of(row)
    if metric == "prefill":
        return metric, int(row["batch_size"]) * int(row["prompt_tokens"]) / (row["prefill_latency_ms"] / 1e3)
    if metric is not None:
        return metric, 1e3 / row["per_token_latency_ms"]
    return None


def measured_vllm(row: dict) -> tuple[str, float] | None:
    """The headline figure of a vLLM row: per-sequence decode tokens/s from the median (else mean) TPOT or the
    fitted ITL at zero context, else the run's output throughput or request rate; a vLLM predictor returns the
    same metric."""
    for k in ("tpot_ms_median", "tpot_ms_mean", "itl_fit_intercept_ms", "derived_ms_per_step"):
        if isinstance(row.get(k), (int, float)) and row[k] > 0:
            return f"decode (1000 / {k})", 1e3 / row[k]
    for k in ("output_tokens_per_s_aggregate", "throughput_tokens_per_s_unspecified", "requests_per_s"):
        if isinstance(row.get(k), (int, float)) and row[k] > 0:
            return k, float(row[k])
    return None


def evaluate(rows: list[dict]) -> dict:
    """Every row with its setup, measurement, prediction, ratio and (if excluded) reason."""
    out = {"included": [], "excluded": [], "vllm": []}
    for row in rows:
        if row["engine"] == "vllm":
            m = measured_vllm(row)
            fn = PREDICTORS.get("vllm")
            p = fn(row) if fn else None
            out["vllm"].append(_record(row, m, p, "", None))
            continue
        setup, reason = classify(row)
        if setup is None and not reason:
            reason = "no setup"
        m = measured(row) if row["engine"] == TRANSFORMERS else None
        fn = PREDICTORS.get(row["engine"])
        p = fn(row) if (fn and setup is not None) else None
        out["excluded" if reason else "included"].append(_record(row, m, p, reason, setup))
    return out


def _record(row: dict, m, p: Prediction | None, reason: str, setup: Setup | None) -> dict:
    load = row.get("batch_size") or row.get("concurrency") or (f"{row['num_prompts']:g} prompts" if row.get("num_prompts") else None)
    rec = {"id": row["id"], "engine": row["engine"], "gpu": row["gpu"], "num_gpus": row.get("num_gpus"),
           "model": row["model_id"], "precision": row["precision"], "batch": load,
           "prompt_tokens": row.get("prompt_tokens"), "new_tokens": row.get("generated_tokens"),
           "source": _source(row), "quality": row.get("quality")}
    if setup is not None:
        rec.update(vplan_gpu=setup.gpu.name, vplan_precision=setup.precision, note=setup.note)
    if m is not None:
        rec.update(metric=m[0], measured_tokens_per_s=round(m[1], 3))
    if p is not None:
        rec.update(predicted_tokens_per_s=round(p.tokens_per_s, 3), plan_status=p.status)
        if m is not None and m[1] > 0 and p.tokens_per_s > 0:
            rec["ratio"] = round(p.tokens_per_s / m[1], 3)
    if reason:
        rec["reason"] = reason
        rec["exclusion"] = ("other engine" if row["engine"] not in (TRANSFORMERS, "vllm") else
                            "other software" if setup is not None else "cannot plan")
    return rec


def _source(row: dict) -> str:
    s = row["source"]
    where = s.get("url") or f"{s.get('repo')}/{s.get('path')}"
    return where + (f" @{s['commit'][:8]}" if s.get("commit") else "")


def summary(included: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in included:
        groups.setdefault((r["vplan_gpu"], r["precision"]), []).append(r)
    out = []
    for (gpu, prec), rs in sorted(groups.items()):
        ratios = [r["ratio"] for r in rs if "ratio" in r]
        worst = max(rs, key=lambda r: max(r.get("ratio", 99), 1 / r.get("ratio", 1 / 99)))
        out.append({"gpu": gpu, "precision": prec, "rows": len(rs), "min_ratio": min(ratios, default=None),
                    "max_ratio": max(ratios, default=None), "worst_id": worst["id"]})
    return out


def within(r: dict) -> bool:
    return "ratio" in r and 1 / BOUND <= r["ratio"] <= BOUND


def main(argv: list[str]) -> int:
    from speed_evidence_report import write_reports

    res = evaluate(load_rows())
    res["summary"] = summary(res["included"])
    write_reports(res, RESULTS, BOUND)
    bad = [r for r in res["included"] if not within(r)]
    print(f"{len(res['included'])} rows included, {len(res['excluded'])} excluded, {len(res['vllm'])} vLLM rows; "
          f"{len(bad)} outside {BOUND}x: {[(r['id'], r.get('ratio')) for r in bad][:20]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main(sys.argv[1:]))
