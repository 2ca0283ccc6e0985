"""Local model folders (what ``save_pretrained`` or ``hf download`` wrote): config, checkpoint summary from
the safetensors headers (no tensor data read), and what a folder lacks to load."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from vplan.planner.errors import MalformedConfigError, NoConfigError
from vplan.planner.source.checkpoint import CheckpointSummary, summarize_tensors
from vplan.planner.source.model_source import TOKENIZER_FILES, ModelSource

_MAX_HEADER_BYTES = 100 * 1024 * 1024


def resolve_local(ref: str) -> ModelSource:
    folder = Path(os.path.expanduser(ref)).resolve()
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise NoConfigError(f"{folder} has no config.json: pass the folder `save_pretrained` wrote, or a Hub id")
    config = read_config(cfg, str(folder))
    ck = checkpoint_from_folder(folder)
    notes = () if ck else ("no safetensors or pytorch_model*.bin weights in the folder: checkpoint size unknown",)
    tok = any((folder / n).is_file() for n in TOKENIZER_FILES)
    return ModelSource(str(folder), None, "local", config, ck, notes, None, tok)


def read_config(path: Path, who: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise MalformedConfigError(f"config.json of {who} is not valid JSON ({e}): fix or re-download it "
                                   "(delete it from the HF cache)") from e
    if not isinstance(config, dict) or not config.get("model_type"):
        raise MalformedConfigError(f"config.json of {who} has no model_type: it is not a transformers model "
                                   "config; pass the model's folder or repo")
    return config


def read_safetensors_header(path: str | os.PathLike) -> dict:
    """Tensor entries of a local .safetensors file: {name: {"dtype", "shape", "data_offsets"}} (no data read)."""
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n < 2 or n > _MAX_HEADER_BYTES:
            raise MalformedConfigError(f"{path} is not a safetensors file (header length {n}): re-download it")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:
            raise MalformedConfigError(f"{path} has an unreadable safetensors header: re-download it") from e
    header.pop("__metadata__", None)
    return header


def checkpoint_from_folder(folder: Path) -> CheckpointSummary | None:
    index = folder / "model.safetensors.index.json"
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    if index.is_file():
        try:
            wanted = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError):
            wanted = []
        if wanted and all((folder / s).is_file() for s in wanted):
            shards = wanted
        elif wanted:
            return index_only(index, "safetensors")
    if shards:
        def triples():
            for s in shards:
                for name, t in read_safetensors_header(folder / s).items():
                    yield name, t["dtype"], t["shape"]
        return summarize_tensors(triples(), files=shards)
    if (folder / "pytorch_model.bin.index.json").is_file():
        return index_only(folder / "pytorch_model.bin.index.json", "pytorch-bin")
    bins = {p.name: p.stat().st_size for p in folder.glob("pytorch_model*.bin")}
    return file_sizes(bins) if bins else None


def index_only(index_path: Path, fmt: str) -> CheckpointSummary | None:
    try:
        idx = json.loads(Path(index_path).read_text())
        total = int(idx["metadata"]["total_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    wm = idx.get("weight_map", {})
    return CheckpointSummary(total, len(wm), {}, {}, fmt, "index total_size only",
                             tuple(sorted(set(wm.values()))))


def file_sizes(bins: dict[str, int]) -> CheckpointSummary:
    return CheckpointSummary(sum(bins.values()), 0, {}, {}, "pytorch-bin",
                             "file sizes of pytorch_model*.bin (pickle overhead included)", tuple(sorted(bins)))


def missing_model_files(folder: Path) -> list[str]:
    """What a folder lacks to load: config.json and every weight shard (index-aware). Empty when complete."""
    if not folder.is_dir():
        return [str(folder)]
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        idx = folder / index_name
        if idx.is_file():
            try:
                shards = sorted(set(json.loads(idx.read_text())["weight_map"].values()))
            except (ValueError, KeyError):
                return missing + [f"{index_name} (unreadable)"]
            return missing + [s for s in shards if not (folder / s).is_file()]
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("pytorch_model*.bin")):
        missing.append("weights (*.safetensors)")
    return missing
