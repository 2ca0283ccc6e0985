"""GPU calibration: vplan's own plans run on a real GPU, measured against what they planned.

Not part of the default tests; run on a machine with a CUDA GPU (an H100 80 GB is the reference):

    python benchmarks/gpu_runtime.py                              # every case, one subprocess each
    python benchmarks/gpu_runtime.py --cases qwen3-8b:bf16,qwen3-8b:nf4
    python benchmarks/gpu_runtime.py --max-checkpoint-gib 40 --workdir /local/scratch/vplan-bench

Each case is a catalog model (a 7-8B dense, a ~30B dense that fits one 80 GB GPU, a 30B MoE, gpt-oss-20b in its
dequantized bf16 form, a 70B quantized) in a precision (bf16, int8, nf4). The model is built from its real config
with random weights (``from_config`` on the GPU, ``save_pretrained``); where the checkpoint would exceed
``--max-checkpoint-gib`` the layer count is cut and the row says so (per-layer figures stay the real model's).
The plan is vplan's own (``vplan.planner.api.check_one`` on the saved folder, for this GPU from the catalog, one
GPU, no offload), and the runtime runs it as ``vplan run`` does (``load_planned`` + ``run_records``).

Measured per case: CUDA context (device memory used right after CUDA initialises, before any tensor), weights
allocated after load, peak allocated and peak reserved during generate(), device-level peak use (mem_get_info),
load seconds, prefill seconds and decode tokens/s. Compared: weights vs plan weights, peak allocated vs the plan's
tensor bytes (weights + KV + activations), device peak vs the plan's total (with its overhead constants), so the
overhead constants of planner/memory/overhead.py and the speed constants of planner/search/speed.py can be
replaced by these measurements, citing benchmarks/results/gpu_runtime.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3
MODELS = {"qwen3-8b": "Qwen/Qwen3-8B", "qwen3-32b": "Qwen/Qwen3-32B", "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B",
          "gpt-oss-20b": "openai/gpt-oss-20b", "llama-3.3-70b": "meta-llama/Llama-3.3-70B-Instruct"}
CASES = ("qwen3-8b:bf16", "qwen3-8b:int8", "qwen3-8b:nf4", "qwen3-32b:bf16", "qwen3-32b:int8", "qwen3-32b:nf4",
         "qwen3-30b-a3b:bf16", "qwen3-30b-a3b:int8", "qwen3-30b-a3b:nf4", "gpt-oss-20b:bf16", "llama-3.3-70b:int8",
         "llama-3.3-70b:nf4")
PROMPT_TOKENS, NEW_TOKENS = 512, 64


def cut_config(model: str, max_ckpt_gib: float) -> tuple[dict, dict]:
    """The catalog config, layers cut so the bf16 checkpoint stays under ``max_ckpt_gib`` (sizes from the planner)."""
    from vplan.planner.memory.weights import weight_bytes_by_block
    from vplan.planner.model import build_spec
    from vplan.planner.source.catalog import load

    cfg = {k: v for k, v in load(MODELS[model])["config"].items() if k != "quantization_config"}  # gpt-oss: bf16 form
    spec = build_spec(MODELS[model], None, "catalog", cfg, None)
    by_block = weight_bytes_by_block(spec, "bf16")
    per_layer = max(b for n, b in by_block.items() if ".layers." in n)
    fixed = sum(b for n, b in by_block.items() if ".layers." not in n)
    full = cfg["num_hidden_layers"]
    layers = full if sum(by_block.values()) <= max_ckpt_gib * GIB else max(1, int((max_ckpt_gib * GIB - fixed) // per_layer))
    cfg["num_hidden_layers"] = layers
    if isinstance(cfg.get("layer_types"), list):
        cfg["layer_types"] = cfg["layer_types"][:layers]
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = min(cfg["max_window_layers"], layers)
    return cfg, {"layers": layers, "layers_full": full}


def build_checkpoint(model: str, workdir: Path, max_ckpt_gib: float, device: str = "cuda") -> tuple[Path, dict]:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    cfg, info = cut_config(model, max_ckpt_gib)
    folder = workdir / f"{model}-{info['layers']}l"
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        return folder, info
    cfg = dict(cfg, bos_token_id=2, eos_token_id=3, pad_token_id=1)
    model_type = cfg.pop("model_type")
    for k in ("architectures", "torch_dtype", "dtype"):
        cfg.pop(k, None)
    with torch.device(device):
        torch.manual_seed(0)
        m = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=torch.bfloat16)
    m.save_pretrained(folder, max_shard_size="4GB")
    del m
    words = ["<unk>", "<pad>", "<s>", "</s>"] + [f"w{i}" for i in range(3996)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>").save_pretrained(folder)
    return folder, info


def plan_case(folder: Path, precision: str, gpu_name: str):
    """vplan's plan for the folder on one GPU of this type, no offload (what the benchmark holds the GPU to)."""
    from vplan.planner.api import CheckOptions, check_one
    from vplan.planner.hardware.cluster import profile_for_gpu
    from vplan.planner.plan.contract import Workload
    from vplan.planner.search.core import SearchOptions

    wl = Workload(context_tokens=PROMPT_TOKENS + NEW_TOKENS, prompt_tokens=PROMPT_TOKENS, max_new_tokens=NEW_TOKENS)
    opts = CheckOptions(search=SearchOptions(workload=wl, precision=precision, no_offload=True), suggest=False)
    return check_one(str(folder), profile_for_gpu(gpu_name, 1, node_mem="512GB", cpus_per_node=16, nodes=1), opts).plan


def catalog_gpu(device_name: str) -> str:
    from vplan.planner.hardware.gpus import GPU_CATALOG

    name = device_name.upper().replace(" ", "")
    for key, want in (("H200", "H200"), ("H100NVL", "H100-NVL"), ("H100PCIE", "H100-PCIe"), ("H100", "H100-80GB"),
                      ("A100-SXM4-80GB", "A100-80GB"), ("A100", "A100-40GB"), ("L40S", "L40S"), ("L4", "L4")):
        if key in name:
            return GPU_CATALOG[want].name
    raise SystemExit(f"gpu_runtime: {device_name} is not in vplan's GPU catalog")


def run_case(case: str, workdir: Path, max_ckpt_gib: float) -> dict:
    import torch

    from vplan.runtime.report import gpu_snapshot
    from vplan.runtime.transformers.generate import run_records
    from vplan.runtime.transformers.load import load_planned

    model, precision = case.split(":")
    torch.cuda.init()
    torch.zeros(1, device="cuda")
    free, total = torch.cuda.mem_get_info(0)
    context = total - free - torch.cuda.memory_reserved(0)
    folder, info = build_checkpoint(model, workdir, max_ckpt_gib)
    torch.cuda.empty_cache()
    plan = plan_case(folder, precision, catalog_gpu(torch.cuda.get_device_name(0)))
    m, tok, load_rep = load_planned(plan, tty=False)
    after_load = gpu_snapshot()[0]
    torch.cuda.reset_peak_memory_stats(0)
    prompt = " ".join(f"w{(i * 7) % 3000 + 10}" for i in range(PROMPT_TOKENS))
    tok.chat_template = None
    run_rep = run_records(m, tok, [{"id": i, "prompt": prompt} for i in range(2)], plan, max_new_tokens=NEW_TOKENS, tty=False)
    peak = gpu_snapshot()[0]
    ids = tok(prompt, return_tensors="pt")["input_ids"].to(0)
    times = {}
    for n in (1, NEW_TOKENS):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=1)
        torch.cuda.synchronize()
        times[n] = time.perf_counter() - t0
    gpu0 = plan.gpu_devices[0]
    return {"case": case, **info, "precision": precision, "plan_status": plan.status, "cuda_context_bytes": context,
            "load_seconds": load_rep.load_seconds, "prefill_seconds": times[1],
            "decode_tokens_per_s": (NEW_TOKENS - 1) / max(times[NEW_TOKENS] - times[1], 1e-9),
            "planned_decode_tokens_per_s": plan.speed.decode_tokens_per_s,
            "planned_weights_bytes": gpu0.weights_bytes, "allocated_after_load_bytes": after_load["allocated_bytes"],
            "planned_tensor_bytes": gpu0.tensor_bytes, "max_allocated_bytes": peak["max_allocated_bytes"],
            "planned_total_bytes": gpu0.total_bytes, "reserved_peak_bytes": peak["reserved_peak_bytes"],
            "device_used_peak_bytes": peak["device_used_bytes"], "weight_checks": list(load_rep.weight_checks),
            "allocator": load_rep.allocator, "run_tokens_per_s": run_rep.tokens_per_s}


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "transformers", "accelerate", "bitsandbytes", "kernels", "triton"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def markdown(res: dict) -> str:
    g = lambda b: f"{b / GIB:.2f}"  # noqa: E731
    pct = lambda m, p: f"{100 * (m - p) / p:+.1f}%" if p else "n/a"  # noqa: E731
    lines = [f"# GPU runtime measurements ({res['date']})", "", f"Device: {res['device']}; versions: {res['versions']}",
             "", "| case | layers | context GiB | load s | decode tok/s (planned) | weights GiB planned / measured | "
             "tensor peak GiB planned / measured | device peak GiB planned / measured |", "|---|---|---|---|---|---|---|---|"]
    for r in res["cases"]:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} |||||||")
            continue
        lines.append(
            f"| {r['case']} | {r['layers']}/{r['layers_full']} | {g(r['cuda_context_bytes'])} | {r['load_seconds']:.1f} | "
            f"{r['decode_tokens_per_s']:.1f} ({r['planned_decode_tokens_per_s']:.1f}) | "
            f"{g(r['planned_weights_bytes'])} / {g(r['allocated_after_load_bytes'])} "
            f"({pct(r['allocated_after_load_bytes'], r['planned_weights_bytes'])}) | "
            f"{g(r['planned_tensor_bytes'])} / {g(r['max_allocated_bytes'])} ({pct(r['max_allocated_bytes'], r['planned_tensor_bytes'])}) | "
            f"{g(r['planned_total_bytes'])} / {g(r['device_used_peak_bytes'])} "
            f"({pct(r['device_used_peak_bytes'], r['planned_total_bytes'])}) |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated MODEL:PRECISION, of: " + ", ".join(CASES))
    ap.add_argument("--workdir", default=os.environ.get("TMPDIR", "/tmp") + "/vplan-gpu-bench")
    ap.add_argument("--max-checkpoint-gib", type=float, default=40.0, help="cut layers so a checkpoint stays under this")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(HERE / "results" / "gpu_runtime"))
    a = ap.parse_args(argv)
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if a.one:  # child: one case, JSON on the last stdout line
        print(json.dumps(run_case(a.one, workdir, a.max_checkpoint_gib), default=str))
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_runtime: no CUDA GPU visible; this benchmark measures GPU memory and needs one")
    results = []
    for case in [c for c in a.cases.split(",") if c]:
        p = subprocess.run([sys.executable, __file__, "--one", case, "--workdir", str(workdir),
                            "--max-checkpoint-gib", str(a.max_checkpoint_gib)], capture_output=True, text=True)
        sys.stderr.write(p.stderr[-4000:])
        ok = p.returncode == 0
        results.append(json.loads(p.stdout.strip().splitlines()[-1]) if ok else
                       {"case": case, "error": (p.stderr.strip().splitlines() or ["failed"])[-1][:300]})
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "device": torch.cuda.get_device_name(0), "gpu_total_bytes": torch.cuda.get_device_properties(0).total_memory,
           "versions": _versions(), "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "cases": results}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
