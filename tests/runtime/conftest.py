"""Tiny random-weight models built from real configs (tests/runtime/configs), a tokenizer trained in-process,
and Plans written by hand for them (tests of the runtime alone; tests/runtime/test_plan_to_run.py runs the
planner's own plans). No downloads.

Planned weight bytes come from the saved safetensors headers (dtype x shape per tensor, mapped through the
device map): an independent truth for the measured bytes.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests import plans
from vplan.planner.plan.contract import DeviceBudget, Plan, Quantization, Requirement, Workload
from vplan.planner.units import GIB

CONFIGS = Path(__file__).parent / "configs"
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
WORDS = [f"w{i}" for i in range(900)] + "the a of to and in is it you that he was for on are with as his they".split()
PROMPTS = ["the w1 w2 of w3 and w4", "you are w10 w11 w12 in w99", "it is w5 w6 w7 to w8 w9 w300"]


def build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=1000, special_tokens=specials, min_frequency=1)
    tok.train_from_iterator([" ".join(WORDS[i:i + 20]) for i in range(0, len(WORDS), 20)], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def _shrunk(name: str, **overrides) -> dict:
    cfg = json.loads((CONFIGS / name).read_text())
    cfg.pop("torch_dtype", None)
    cfg.update(overrides)
    return cfg


def build_model(folder: Path, cfg: dict, tokenizer, seed: int = 0):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(cfg, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model_type = cfg.pop("model_type")
    cfg.pop("architectures", None)
    config = AutoConfig.for_model(model_type, **cfg)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def safetensors_tensors(folder: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (dtype, shape) from the safetensors headers (no torch)."""
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        out.update({k: (v["dtype"], v["shape"]) for k, v in header.items() if k != "__metadata__"})
    return out


def module_device(name: str, device_map: dict) -> str:
    best = max((k for k in device_map if k == "" or name == k or name.startswith(k + ".")), key=len)
    return device_map[best]


def planned_weight_bytes(folder: Path, device_map: dict, dtype: str, int8: bool = False) -> dict[str, int]:
    """Bytes per device as the runtime will hold them: tensors in `dtype`; with int8, Linear weights inside the
    decoder layers at 1 byte + one fp32 scale per output row (bitsandbytes SCB)."""
    out: dict[str, int] = {}
    for name, (_dt, shape) in safetensors_tensors(folder).items():
        numel = 1
        for s in shape:
            numel *= s
        if int8 and ".layers." in name and name.endswith("proj.weight") and len(shape) == 2:
            b = numel + 4 * shape[0]
        else:
            b = numel * DTYPE_BYTES[dtype]
        dev = module_device(name, device_map)
        out[dev] = out.get(dev, 0) + b
    return out


def make_plan(folder: Path, device_map: dict, *, dtype: str = "float32", precision: str | None = None,
              quantization: Quantization | None = None, offload_folder: str | None = None, gpus: int = 0,
              gpu_type: str | None = None, host_ram_bytes: int = 2 * GIB, max_new_tokens: int = 8, model_id: str | None = None,
              source: str = "local", revision: str | None = None, requirements: dict[str, Requirement] | None = None,
              status: str | None = None) -> Plan:
    int8 = bool(quantization and quantization.config.get("load_in_8bit"))
    weights = planned_weight_bytes(folder, device_map, dtype, int8=int8)
    devices = []
    for i in range(gpus):
        devices.append(DeviceBudget(str(i), weights_bytes=weights.get(str(i), 0), overhead_bytes=512 * 1024**2,
                                    capacity_bytes=40 * GIB))
    if "cpu" in weights or gpus == 0:
        devices.append(DeviceBudget("cpu", weights_bytes=weights.get("cpu", 0), capacity_bytes=16 * GIB))
    if "disk" in weights:
        devices.append(DeviceBudget("disk", weights_bytes=weights["disk"], capacity_bytes=100 * GIB))
    config = json.loads((folder / "config.json").read_text())
    ckpt = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    if status is None:
        status = "disk-offload" if "disk" in weights else ("cpu-offload" if "cpu" in weights else "fits")
    wl = Workload(context_tokens=256, prompt_tokens=64, max_new_tokens=max_new_tokens)
    return plans.plan(
        model_id=model_id or str(folder), revision=revision, source=source, architecture=config["model_type"],
        status=status, precision=precision or {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}[dtype],
        dtype=dtype, quantization=quantization, gpu_type=gpu_type, gpus=gpus, device_map=device_map,
        devices=tuple(devices), offload_folder=offload_folder, host_ram_bytes=host_ram_bytes,
        disk_bytes=weights.get("disk", 0) if offload_folder else 0, hub_cache_bytes=ckpt, checkpoint_bytes=ckpt,
        workload=wl, speed=plans.speed(decode=10.0, prefill=100.0, load_s=1.0, workload=wl), config=config,
        requirements=requirements or {})


def layer_map(n_layers: int, placement: list[str], head: str = "cpu") -> dict:
    """Module-level map the way transformers names them: embed, each layer, norm, rotary, lm_head."""
    dm = {"model.embed_tokens": head}
    dm.update({f"model.layers.{i}": placement[i] for i in range(n_layers)})
    dm.update({"model.norm": head, "model.rotary_emb": head, "lm_head": head})
    return dm


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{"llama": folder, "moe": folder}: Llama-3.1-8B and Qwen3-30B-A3B configs shrunk to 4 / 2 small layers."""
    root = tmp_path_factory.mktemp("tiny-models")
    tok = build_tokenizer(root / "tok")
    llama = _shrunk("llama-3.1-8b.json", hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=1024, max_position_embeddings=8192 * 2)
    moe = _shrunk("qwen3-30b-a3b.json", hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_experts=4,
                  num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  vocab_size=1024, max_window_layers=2, max_position_embeddings=4096)
    return {"llama": build_model(root / "llama", llama, tok), "moe": build_model(root / "moe", moe, tok, seed=1)}


@pytest.fixture(scope="session")
def reference_tokens(tiny_models):
    """Greedy tokens of the plain model (from_pretrained, no device map, fp32) for PROMPTS: the truth to match."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = {}
    for name, folder in tiny_models.items():
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(folder)
        toks = []
        for p in PROMPTS:
            text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            toks.append(gen[0, ids.shape[1]:].tolist())
        out[name] = toks
    return out


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """A node with no SLURM variables, no HF offline flag, an empty HF cache and a roomy fake cgroup."""
    for var in ("SLURM_MEM_PER_NODE", "SLURM_MEM_PER_CPU", "SLURM_CPUS_ON_NODE", "HF_HUB_OFFLINE", "VPLAN_OFFLOAD_FOLDER",
                "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    cg = tmp_path / "cgroup"
    cg.mkdir()
    (cg / "memory.max").write_text("max\n")
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/\n")
    monkeypatch.setenv("VPLAN_CGROUP_ROOT", str(cg))
    monkeypatch.setenv("VPLAN_PROC_CGROUP", str(proc))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return {"cgroup": cg, "proc": proc, "hf_home": tmp_path / "hf"}
