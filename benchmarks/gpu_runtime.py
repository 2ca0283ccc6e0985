"""GPU runtime measurements: measured vs planned memory per device, load time, decode tokens/s.

Not part of the default tests; run on a machine with a CUDA GPU:

    python benchmarks/gpu_runtime.py                      # all cases that fit this card, one subprocess each
    python benchmarks/gpu_runtime.py --cases qwen3-8b     # a subset
    python benchmarks/gpu_runtime.py --max-checkpoint-gib 20 --workdir /local/scratch/vplan-bench

Models are random-weight models built from the real configs in benchmarks/configs/ (Qwen3-8B, Qwen3-32B,
Llama-3.3-70B-Instruct, gpt-oss-20b): built on the GPU with ``from_config`` and written with ``save_pretrained``.
Where the full checkpoint would not fit ``--max-checkpoint-gib`` (disk and time), ``num_hidden_layers`` is cut
and the result says so: per-layer figures stay those of the real model. gpt-oss is built in bf16 (the form
transformers dequantizes MXFP4 to without the ``kernels`` package).

Each case writes a Plan (weights per device from the safetensors headers in the plan's dtype; bitsandbytes 4-bit
Linear weights at 0.5 byte + block scales; KV cache for the workload; overhead 0 so the measured overhead shows
directly), runs it through the runtime exactly as ``vplan run`` does (``load_planned`` + ``run_records``), and
records measured vs planned per device, load seconds and decode tokens/s. A "40GB" case caps GPU 0 with the
device map so layers spill to the CPU, emulating a plan for a 40 GB card.
Results: benchmarks/results/gpu_runtime.json and .md (device, versions, date).
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
CASES = {
    # name: (config file, dtype, quantization, gpu weight cap GiB or None, attn)
    "qwen3-8b": ("qwen3-8b.json", "bfloat16", None, None, "sdpa"),
    "qwen3-32b": ("qwen3-32b.json", "bfloat16", None, None, "sdpa"),
    "qwen3-32b-40gb-cpu-offload": ("qwen3-32b.json", "bfloat16", None, 8, "sdpa"),
    "llama-3.3-70b-nf4": ("llama-3.3-70b-instruct.json", "bfloat16",
                          {"method": "bitsandbytes", "config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                                                "bnb_4bit_compute_dtype": "bfloat16"}}, None, "sdpa"),
    "gpt-oss-20b-bf16": ("gpt-oss-20b.json", "bfloat16", None, None, "eager"),
}
PROMPT_TOKENS, NEW_TOKENS = 512, 64


def _tokenizer(folder: Path, vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<s>", "</s>"] + [f"w{i}" for i in range(min(vocab, 4000) - 4)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    fast.save_pretrained(folder)


def build_checkpoint(name: str, workdir: Path, max_ckpt_gib: float) -> tuple[Path, dict]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_file, dtype, *_ = CASES[name]
    cfg = json.loads((HERE / "configs" / cfg_file).read_text())
    cfg.pop("quantization_config", None)  # gpt-oss: random bf16 weights (its dequantized form)
    full_layers = cfg["num_hidden_layers"]
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    cfg.pop("torch_dtype", None)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=torch.bfloat16)
    total = sum(p.numel() * 2 for p in meta.parameters())
    per_layer = sum(p.numel() * 2 for p in meta.model.layers[0].parameters())
    fixed = total - per_layer * full_layers
    layers = full_layers
    if total > max_ckpt_gib * GIB:
        layers = max(1, int((max_ckpt_gib * GIB - fixed) // per_layer))
    cfg["num_hidden_layers"] = layers
    if "layer_types" in cfg:
        cfg["layer_types"] = cfg["layer_types"][:layers]
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = min(cfg["max_window_layers"], layers)
    cfg.update(bos_token_id=2, eos_token_id=3, pad_token_id=1)
    folder = workdir / f"{cfg_file.removesuffix('.json')}-{layers}l"
    info = {"layers": layers, "layers_full": full_layers, "config": cfg_file}
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        return folder, info
    with torch.device("cuda"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="4GB")
    del model
    torch.cuda.empty_cache()
    _tokenizer(folder, cfg["vocab_size"])
    return folder, info


def _headers(folder: Path) -> dict:
    import struct

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            out.update({k: v["shape"] for k, v in json.loads(fh.read(n)).items() if k != "__metadata__"})
    return out


def make_plan(name: str, folder: Path):
    from vplan.planner.plan.contract import DeviceBudget, Plan, Speed, Workload

    _cfg_file, dtype, quant, cap_gib, attn = CASES[name]
    config = json.loads((folder / "config.json").read_text())
    n_layers = config["num_hidden_layers"]
    nf4 = bool(quant and quant["config"].get("load_in_4bit"))

    def tensor_bytes(tname, shape):
        numel = 1
        for s in shape:
            numel *= s
        if nf4 and ".layers." in tname and len(shape) == 2 and "router" not in tname and "gate.weight" not in tname:
            return numel // 2 + numel // 64 + (numel // 64 // 256) * 4  # 4-bit + uint8 absmax (double quant) + fp32 per 256
        return numel * 2

    per_module: dict[str, int] = {}
    for tname, shape in _headers(folder).items():
        parts = tname.split(".")
        key = ".".join(parts[:3]) if parts[1] == "layers" else ".".join(parts[:2]) if parts[0] == "model" else parts[0]
        per_module[key] = per_module.get(key, 0) + tensor_bytes(tname, shape)
    order = ["model.embed_tokens"] + [f"model.layers.{i}" for i in range(n_layers)] + ["model.norm", "model.rotary_emb", "lm_head"]
    if config.get("tie_word_embeddings"):
        order.remove("lm_head")
    dm, used = {}, 0
    for m in order:
        b = per_module.get(m, 0)
        on_gpu = cap_gib is None or m in ("model.embed_tokens", "model.norm", "model.rotary_emb", "lm_head") \
            or (used + b <= cap_gib * GIB and all(v == "0" for k, v in dm.items() if k.startswith("model.layers")))
        dm[m] = "0" if on_gpu else "cpu"
        used += b if on_gpu else 0
    kv_heads, head_dim = config["num_key_value_heads"], config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    ctx = PROMPT_TOKENS + NEW_TOKENS
    kv_per_layer = 2 * kv_heads * head_dim * 2 * ctx
    w = {"0": 0, "cpu": 0}
    for m, d in dm.items():
        w[d] += per_module.get(m, 0)
    # CPU-offloaded layers execute on GPU 0 (accelerate streams their weights in), so their KV cache is there too
    devices = [DeviceBudget("0", weights_bytes=w["0"], kv_cache_bytes=kv_per_layer * n_layers, capacity_bytes=0,
                            max_memory_bytes=int((cap_gib or 1000) * GIB))]
    if w["cpu"]:
        devices.append(DeviceBudget("cpu", weights_bytes=w["cpu"]))
    ckpt = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    import torch

    gpu_name = torch.cuda.get_device_name(0)
    return Plan(model_id=str(folder), revision=None, source="local", architecture=config["model_type"],
                status="cpu-offload" if w["cpu"] else "fits", precision="nf4" if nf4 else "bf16", dtype=dtype,
                quantization=quant, gpu_type=gpu_name, gpus=1, device_map=dm, devices=tuple(devices),
                offload_folder=None, host_ram_bytes=w["cpu"] + 8 * GIB, disk_bytes=0, hub_cache_bytes=ckpt, checkpoint_bytes=ckpt,
                params_total=0, params_active=0, kv_bytes_per_token=kv_per_layer // ctx * n_layers, kv_cache_bytes=kv_per_layer * n_layers,
                workload=Workload(context_tokens=ctx, prompt_tokens=PROMPT_TOKENS, max_new_tokens=NEW_TOKENS, attn_implementation=attn),
                speed=Speed(1.0, 1.0, 1.0, ("benchmark plan: weights from safetensors headers, overhead not planned",)),
                cluster={"profile": "benchmark"}, config=config)


def run_case(name: str, workdir: Path, max_ckpt_gib: float) -> dict:
    import torch

    from vplan.runtime.generate import run_records
    from vplan.runtime.load import load_planned
    from vplan.runtime.report import gpu_snapshot

    folder, info = build_checkpoint(name, workdir, max_ckpt_gib)
    plan = make_plan(name, folder)
    base = gpu_snapshot()[0]["device_used_bytes"]  # before the runtime's own context work (the builder's context exists)
    model, tok, load_rep = load_planned(plan, tty=False)
    prompt = " ".join(f"w{(i * 7) % 3000 + 10}" for i in range(PROMPT_TOKENS))
    recs = [{"id": i, "prompt": prompt} for i in range(2)]
    tok.chat_template = None
    run_rep = run_records(model, tok, recs, plan, max_new_tokens=NEW_TOKENS, tty=False)
    ids = tok(prompt, return_tensors="pt")["input_ids"].to(0 if plan.device_map["model.embed_tokens"] == "0" else "cpu")
    times = {}
    for n in (1, NEW_TOKENS):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=1)
        torch.cuda.synchronize()
        times[n] = time.perf_counter() - t0
    decode = (NEW_TOKENS - 1) / max(times[NEW_TOKENS] - times[1], 1e-9)
    return {"case": name, **info, "checkpoint_bytes": plan.checkpoint_bytes, "device_map_matches": load_rep.device_map_matches,
            "load_seconds": load_rep.load_seconds, "prefill_seconds": times[1], "decode_tokens_per_s": decode,
            "run_tokens_per_s": run_rep.tokens_per_s, "device_used_before_load_bytes": base,
            "planned": [d.to_dict() for d in plan.devices], "after_load": [m.to_dict() for m in load_rep.measures],
            "peak": [m.to_dict() for m in run_rep.peak]}


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for dist in ("torch", "transformers", "accelerate", "bitsandbytes", "kernels", "triton"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def _markdown(res: dict) -> str:
    lines = [f"# GPU runtime measurements ({res['date']})", "", f"Device: {res['device']}; versions: {res['versions']}", "",
             "| case | layers | load s | decode tok/s | GPU 0 planned weights | allocated after load | diff | planned total | peak reserved | diff |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["cases"]:
        if "error" in r:
            lines.append(f"| {r['case']} | error: {r['error']} |||||||||")
            continue
        load0 = next((m for m in r["after_load"] if m["device"] == "0"), None)
        peak0 = next((m for m in r["peak"] if m["device"] == "0"), None)
        g = lambda b: f"{b / GIB:.2f} GiB"  # noqa: E731
        pct = lambda m: "n/a" if m is None or m["diff_pct"] is None else f"{m['diff_pct']:+.1f}%"  # noqa: E731
        lines.append(f"| {r['case']} | {r['layers']}/{r['layers_full']} | {r['load_seconds']:.1f} | {r['decode_tokens_per_s']:.1f} | "
                     f"{g(load0['planned_bytes']) if load0 else ''} | {g(load0['measured_bytes']) if load0 else ''} | {pct(load0)} | "
                     f"{g(peak0['planned_bytes']) if peak0 else ''} | {g(peak0['measured_bytes']) if peak0 else ''} | {pct(peak0)} |")
    lines += ["", "Planned totals carry no overhead term: the peak difference is the measured overhead "
              "(CUDA workspaces, allocator reserve, activations beyond the plan's)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--workdir", default=os.environ.get("TMPDIR", "/tmp") + "/vplan-gpu-bench")
    ap.add_argument("--max-checkpoint-gib", type=float, default=20.0, help="cut layers so a checkpoint stays under this")
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
    for name in [c for c in a.cases.split(",") if c]:
        if CASES[name][2] and importlib_missing("bitsandbytes"):
            results.append({"case": name, "error": "bitsandbytes not installed"})
            continue
        p = subprocess.run([sys.executable, __file__, "--one", name, "--workdir", str(workdir),
                            "--max-checkpoint-gib", str(a.max_checkpoint_gib)], capture_output=True, text=True)
        sys.stderr.write(p.stderr[-4000:])
        if p.returncode != 0:
            results.append({"case": name, "error": (p.stderr.strip().splitlines() or ["failed"])[-1][:300]})
        else:
            results.append(json.loads(p.stdout.strip().splitlines()[-1]))
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "device": torch.cuda.get_device_name(0), "gpu_total_bytes": torch.cuda.get_device_properties(0).total_memory,
           "versions": _versions(), "prompt_tokens": PROMPT_TOKENS, "new_tokens": NEW_TOKENS, "cases": results}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(_markdown(res))
    print(_markdown(res))


def importlib_missing(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is None


if __name__ == "__main__":
    main()
