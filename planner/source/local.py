"""Local model folders (what ``save_pretrained`` or ``hf download`` wrote): config, checkpoint summary from
the safetensors headers (no tensor data read), and what a folder lacks to load."""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from vplan.planner.errors import MalformedConfigError, NoConfigError
from vplan.planner.source.checkpoint import SAFETENSORS_DTYPE_BITS, CheckpointSummary, summarize_tensors
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
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MalformedConfigError(f"config.json of {who} is not valid JSON ({str(e)[:120]}): fix or re-download it "
                                   "(delete it from the HF cache)") from None
    except OSError as e:
        raise MalformedConfigError(f"config.json of {who} cannot be read ({e.strerror or e}); check its "
                                   "permissions") from None
    if not isinstance(config, dict) or not config.get("model_type") or not isinstance(config["model_type"], str):
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
        except (ValueError, RecursionError):
            raise MalformedConfigError(f"{path} has an unreadable safetensors header: re-download it") from None
    if not isinstance(header, dict):
        raise MalformedConfigError(f"{path} has a safetensors header that is not a JSON object: re-download it")
    header.pop("__metadata__", None)
    for name, t in header.items():
        shape = t.get("shape") if isinstance(t, dict) else None
        dtype = t.get("dtype") if isinstance(t, dict) else None
        if (not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BITS or not isinstance(shape, list)
                or len(shape) > 8 or not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 2**40
                                             for d in shape)):
            raise MalformedConfigError(f"{path}: tensor {name!r} has no safetensors dtype and shape "
                                       f"({str(t)[:60]}): re-download the file")
    return header


def checkpoint_from_folder(folder: Path) -> CheckpointSummary | None:
    index = folder / "model.safetensors.index.json"
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    if index.is_file():
        wanted = _index_shards(index)
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


def _read_index(index_path: Path) -> dict | None:
    """A weight-map index as {"total": bytes or None, "map": {tensor: shard}}; None when it cannot be used."""
    try:
        idx = json.loads(Path(index_path).read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return None
    wm = idx.get("weight_map") if isinstance(idx, dict) else None
    if not isinstance(wm, dict) or not all(isinstance(v, str) and v for v in wm.values()):
        return None
    meta = idx.get("metadata")
    total = meta.get("total_size") if isinstance(meta, dict) else None
    ok = isinstance(total, int) and not isinstance(total, bool) and 0 <= total <= 2**60
    return {"total": total if ok else None, "map": wm}


def _index_shards(index_path: Path) -> list[str]:
    idx = _read_index(index_path)
    return sorted(set(idx["map"].values())) if idx else []


def index_only(index_path: Path, fmt: str) -> CheckpointSummary | None:
    idx = _read_index(index_path)
    if idx is None or idx["total"] is None:
        return None
    return CheckpointSummary(idx["total"], len(idx["map"]), {}, {}, fmt, "index total_size only",
                             tuple(sorted(set(idx["map"].values()))))


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
