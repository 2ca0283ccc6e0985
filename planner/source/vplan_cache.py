"""vplan's own cache of checkpoint summaries (``$VPLAN_CACHE/checkpoints``), keyed by repo and commit, so an
offline rerun still knows the per-tensor sizes that only the Hub's shard headers could tell."""
from __future__ import annotations

import json
import os
from pathlib import Path

from vplan.planner.source.hf_cache import vplan_cache_dir


def _path(repo_id: str, sha: str) -> Path:
    return vplan_cache_dir() / "checkpoints" / ("models--" + repo_id.replace("/", "--")) / f"{sha}.json"


def read(repo_id: str, sha: str | None) -> dict | None:
    if not sha:
        return None
    try:
        with open(_path(repo_id, sha), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write(repo_id, sha, ck, gated, tok) -> None:
    if not sha:
        return
    path = _path(repo_id, sha)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"model_id": repo_id, "revision": sha, "gated": gated,
                                   "tokenizer_files_present": tok, "checkpoint": ck.to_dict() if ck else None}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the offline rerun its checkpoint summary
