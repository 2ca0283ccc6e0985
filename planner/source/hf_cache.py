"""The Hugging Face cache and offline mode, resolved once for the planner and the runtime (no torch).

Same rules as huggingface_hub 2.4 (``constants.py``): the hub cache is ``HF_HUB_CACHE``, else the legacy
``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (``HF_HOME`` defaults to ``$XDG_CACHE_HOME/huggingface``,
``~/.cache/huggingface``). Offline when ``HF_HUB_OFFLINE`` or transformers' ``TRANSFORMERS_OFFLINE`` is truthy.
Every function takes the environment as an argument (default ``os.environ``) so tests point it at fakes.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

SHA_RE = re.compile(r"^[0-9a-f]{40}\Z")
_TRUE = ("1", "ON", "YES", "TRUE")


def truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in _TRUE


def hub_cache_dir(cache_dir: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The folder holding ``models--org--name`` entries."""
    env = os.environ if env is None else env
    if cache_dir:
        return Path(cache_dir).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(var):
            return Path(env[var]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def is_offline(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return truthy(env.get("HF_HUB_OFFLINE")) or truthy(env.get("TRANSFORMERS_OFFLINE"))


def offline_variable(env: Mapping[str, str] | None = None) -> str:
    """Which variable turned offline mode on, for messages ("HF_HUB_OFFLINE=1")."""
    env = os.environ if env is None else env
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if truthy(env.get(var)):
            return f"{var}={env[var]}"
    return ""


def repo_folder(model_id: str, cache_dir: Path) -> Path:
    return cache_dir / ("models--" + model_id.replace("/", "--"))


def snapshot_dir(model_id: str, revision: str | None, cache_dir: Path) -> Path | None:
    """The snapshot of ``model_id`` at ``revision`` (a commit sha, or a branch/tag name; default main) in the
    cache, or None when the cache does not hold it."""
    repo = repo_folder(model_id, cache_dir)
    rev = revision or "main"
    if not SHA_RE.match(rev):
        ref = repo / "refs" / rev
        if not ref.is_file():
            return None
        rev = ref.read_text().strip()
    snap = repo / "snapshots" / rev
    return snap if snap.is_dir() else None


def vplan_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("VPLAN_CACHE") or "~/.cache/vplan").expanduser()
