"""Find a model's config and checkpoint summary: Hub, HF cache, vplan's bundled catalog or a local folder.

Order for a repo id: online, the Hub answers (config.json through ``hf_hub_download`` so it lands in the HF
cache, commit sha, per-tensor safetensors headers) and the checkpoint summary is cached under
``$VPLAN_CACHE`` (default ``~/.cache/vplan``) keyed by repo and commit. Offline (``HF_HUB_OFFLINE=1`` or
``offline=True``) or when the Hub cannot be reached: the HF cache, then the bundled catalog, with a note that
says which and why. A cheap TCP probe (DNS in a thread, connect timeout ``$VPLAN_HUB_TIMEOUT``, default 3 s)
runs before ``huggingface_hub`` is imported, so an unreachable Hub costs milliseconds, not an import and
five retries. Environment variables are read at call time (huggingface_hub reads some only at import).
"""
from __future__ import annotations

import os
import re

from vplan.planner.errors import HubUnreachableError, ModelNotFoundError, OfflineNoCacheError
from vplan.planner.source import catalog, vplan_cache
from vplan.planner.source.checkpoint import CheckpointSummary
from vplan.planner.source.hf_cache import hub_cache_dir, is_offline, repo_folder, snapshot_dir
from vplan.planner.source.hub import Unreachable, resolve_hub
from vplan.planner.source.local import checkpoint_from_folder, read_config, resolve_local
from vplan.planner.source.model_source import TOKENIZER_FILES, ModelSource
from vplan.planner.source.names import did_you_mean
from vplan.planner.source.probe import hub_endpoint, hub_timeout_s, probe

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?\Z", re.ASCII)


def resolve_model(ref: str, *, revision: str | None = None, offline: bool | None = None,
                  endpoint: str | None = None, token: str | None = None, cache_dir=None) -> ModelSource:
    """Locate ``ref`` (a local folder with config.json, or a Hub repo id) and summarize its checkpoint.

    ``offline=None`` follows ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``; ``endpoint=None`` follows
    ``HF_ENDPOINT``; ``token=None`` lets huggingface_hub use ``HF_TOKEN`` or the saved login;
    ``cache_dir=None`` follows ``HF_HUB_CACHE``/``HF_HOME``. Raises :class:`ModelSourceError` subclasses.
    """
    ref = str(ref).strip()
    if _looks_local(ref):
        return resolve_local(ref)
    if not _REPO_ID.match(ref) or ".." in ref:
        raise ModelNotFoundError(f"{ref!r} is neither a Hub repo id (org/name) nor an existing folder: "
                                 "check the id, or pass a folder that holds config.json")
    ep = hub_endpoint(endpoint)
    if offline is None:
        offline = is_offline()
    if offline:
        return _fallback(ref, revision, cache_dir, "offline mode (HF_HUB_OFFLINE=1 or --offline)", ep, True)
    reason = probe(ep, hub_timeout_s())
    if reason is None:
        try:
            return resolve_hub(ref, revision, ep, token, cache_dir)
        except Unreachable as e:
            reason = str(e)
        except ModelNotFoundError as e:
            if revision is None:  # the id itself is unknown to the Hub: say what it may have meant
                raise ModelNotFoundError(e.message + did_you_mean(ref, cache_dir)) from None
            raise
    return _fallback(ref, revision, cache_dir, reason, ep, False)


def _looks_local(ref: str) -> bool:
    if os.path.isdir(os.path.expanduser(ref)):
        return True
    if ref.startswith(("/", "./", "../", "~", ".\\")) or ref.count("/") > 1 or "\\" in ref:
        raise ModelNotFoundError(f"local folder {ref!r} does not exist: check the path, or give a Hub id (org/name)")
    return False


def _fallback(repo_id, revision, cache_dir, reason, endpoint, offline) -> ModelSource:
    hit = _from_hf_cache(repo_id, revision, cache_dir, reason)
    if hit is not None:
        return hit
    entry = catalog.load(repo_id)
    if entry is not None:
        notes = [f"{reason}: using vplan's bundled catalog snapshot"]  # the same words for every model: shown once
        if entry.get("reconstructed"):
            notes.append("catalog config is reconstructed from published values, not a verbatim Hub file")
        if revision and revision != entry.get("revision"):
            notes.append(f"requested revision '{revision}' could not be checked: the catalog snapshot is "
                         f"{'unpinned' if not entry.get('revision') else 'at ' + entry['revision']}")
        ck = CheckpointSummary.from_dict(entry["checkpoint"]) if entry.get("checkpoint") else None
        return ModelSource(entry["model_id"], entry.get("revision"), "catalog", entry["config"], ck, tuple(notes),
                           entry.get("gated"), None, entry.get("provenance"))
    where = hub_cache_dir(cache_dir)
    near = did_you_mean(repo_id, cache_dir)
    if offline:
        raise OfflineNoCacheError(f"{repo_id} is in neither the HF cache ({where}) nor vplan's catalog and offline "
                                  "mode is on: run once with network access (or unset HF_HUB_OFFLINE), or pass a "
                                  f"local folder{near}")
    raise HubUnreachableError(f"{repo_id}: {reason}, and the model is in neither the HF cache ({where}) nor "
                              f"vplan's catalog: check the network or HF_ENDPOINT, or pass a local folder{near}")


def _from_hf_cache(repo_id, revision, cache_dir, reason) -> ModelSource | None:
    root = repo_folder(repo_id, hub_cache_dir(cache_dir))
    snap = snapshot_dir(repo_id, revision, hub_cache_dir(cache_dir))
    if snap is None or not (snap / "config.json").is_file():
        return None
    sha = snap.name
    config = read_config(snap / "config.json", repo_id)
    cached = vplan_cache.read(repo_id, sha) or {}
    notes = [f"{reason}: using the HF cache", f"HF cache snapshot {sha[:12]} in {root}"]
    if cached.get("checkpoint"):
        ck = CheckpointSummary.from_dict(cached["checkpoint"])
    else:
        ck = checkpoint_from_folder(snap)
        if ck is None:
            notes.append("no checkpoint metadata in the caches: checkpoint size unknown (run once online)")
    files = [p.name for p in snap.iterdir()]
    tok = cached.get("tokenizer_files_present")
    if tok is None and any(n in TOKENIZER_FILES for n in files):
        tok = True
    return ModelSource(repo_id, sha, "cache", config, ck, tuple(notes), cached.get("gated"), tok)
