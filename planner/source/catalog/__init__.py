"""Bundled offline catalog: one JSON per model (``org__name.json``), loaded lazily, one file per lookup.

Each file holds ``model_id``, ``revision`` (null unless truly known), ``config`` (verbatim config.json
content), ``checkpoint`` (a :class:`~vplan.planner.source.checkpoint.CheckpointSummary` dict), ``provenance`` and
``reconstructed``. Rebuilt by ``scripts/build_catalog.py``.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

_DIR = os.path.dirname(os.path.abspath(__file__))


def _file_for(model_id: str) -> str:
    return model_id.strip().replace("/", "__") + ".json"


@lru_cache(maxsize=None)
def _names_lower() -> dict[str, str]:
    return {n.lower(): n for n in os.listdir(_DIR) if n.endswith(".json")}


def list_ids() -> list[str]:
    """Model ids the catalog holds (from file names; no file is parsed)."""
    return sorted(n[:-5].replace("__", "/", 1) for n in os.listdir(_DIR) if n.endswith(".json"))


def load(model_id: str) -> dict | None:
    """The catalog entry for ``model_id`` (case-insensitive, like the Hub), or None."""
    if "/" not in model_id or model_id.count("/") > 1:
        return None
    name = _file_for(model_id)
    path = os.path.join(_DIR, name)
    if not os.path.isfile(path):
        real = _names_lower().get(name.lower())
        if real is None:
            return None
        path = os.path.join(_DIR, real)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def entries() -> list[dict]:
    """One summary row per catalog model: id, architecture, checkpoint bytes and dtype, provenance."""
    out = []
    for mid in list_ids():
        e = load(mid) or {}
        c, ck = e.get("config") or {}, e.get("checkpoint") or {}
        q = c.get("quantization_config") if isinstance(c.get("quantization_config"), dict) else {}
        by_dtype = ck.get("params_by_dtype") or {}
        dtype = q.get("quant_method") or (max(by_dtype, key=by_dtype.get).lower() if by_dtype else
                                          str(c.get("torch_dtype") or c.get("dtype") or ""))
        out.append({"model_id": mid, "architecture": c.get("model_type"), "checkpoint_bytes": ck.get("total_bytes"),
                    "checkpoint_dtype": dtype, "gated": e.get("gated"), "revision": e.get("revision"),
                    "provenance": e.get("provenance")})
    return out
