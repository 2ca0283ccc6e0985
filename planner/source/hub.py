"""The Hugging Face Hub through huggingface_hub (imported only here, only when the Hub is reachable).

config.json goes through ``hf_hub_download`` so it lands in the HF cache; the checkpoint summary comes from
each safetensors shard's header (Range requests) and is kept in vplan's cache by commit. Hub errors are
translated into vplan's typed errors with the next step; transport failures become :class:`Unreachable`
so the caller falls back to the caches and the catalog.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from vplan.planner.errors import GatedModelError, ModelNotFoundError, ModelSourceError, NoConfigError
from vplan.planner.source import vplan_cache
from vplan.planner.source.checkpoint import CheckpointSummary, summarize_tensors
from vplan.planner.source.hf_cache import SHA_RE, hub_cache_dir
from vplan.planner.source.local import file_sizes, index_only, read_config
from vplan.planner.source.model_source import TOKENIZER_FILES, ModelSource
from vplan.planner.source.probe import hub_timeout_s


class Unreachable(Exception):
    """The Hub did not answer (transport error): fall back to the caches and the catalog."""


def resolve_hub(repo_id, revision, endpoint, token, cache_dir) -> ModelSource:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub import errors as E

    t = hub_timeout_s()
    api = HfApi(endpoint=endpoint, token=token)
    cache = str(hub_cache_dir(cache_dir))

    # most specific first: GatedRepoError < RepositoryNotFoundError < HfHubHTTPError
    known = (
        (E.GatedRepoError, GatedModelError, "{repo} is gated: accept its license on the Hub and set HF_TOKEN "
                                            "(or run `hf auth login`)"),
        (E.RevisionNotFoundError, ModelNotFoundError, "revision '{rev}' of {repo} not found on {ep}: check the branch, "
                                                      "tag or commit sha"),
        (E.RepositoryNotFoundError, ModelNotFoundError, "{repo} not found on {ep}: check the id, or pass a local folder "
                                                        "(private repos also need HF_TOKEN)"),
        (E.RemoteEntryNotFoundError, NoConfigError, "{repo} has no {what} on {ep}: vplan plans transformers models; "
                                                    "pass a folder with config.json instead"),
    )

    def translate(e: Exception, what: str):
        for hub_error, ours, text in known:
            if isinstance(e, hub_error):
                return ours(text.format(repo=repo_id, rev=revision, ep=endpoint, what=what))
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, E.HfHubHTTPError) and status is not None and status < 500:
            return ModelSourceError(f"the Hub at {endpoint} refused {what} of {repo_id} (HTTP {status}): "
                                    "check HF_TOKEN and the id, or retry with --offline")
        if isinstance(e, (E.HfHubHTTPError, OSError)) or type(e).__module__.split(".")[0].startswith("httpx"):
            return Unreachable(f"Hub unreachable ({endpoint}): {type(e).__name__} {str(e).splitlines()[0][:120]}")
        return None

    try:
        info = api.model_info(repo_id, revision=revision, timeout=t, files_metadata=True)
        cfg_path = hf_hub_download(repo_id, "config.json", revision=revision, endpoint=endpoint, token=token,
                                   cache_dir=cache, etag_timeout=t)
    except Exception as e:  # noqa: BLE001 - translated below, re-raised if unknown
        mapped = translate(e, "config.json")
        if mapped is None:
            raise
        raise mapped from e
    sha = Path(cfg_path).parent.name if SHA_RE.match(Path(cfg_path).parent.name) else info.sha
    config = read_config(Path(cfg_path), repo_id)
    siblings = {s.rfilename: s.size for s in (info.siblings or [])}
    gated = bool(info.gated) if info.gated is not None else None
    tok = any(n.split("/")[-1] in TOKENIZER_FILES for n in siblings) if siblings else None
    notes: list[str] = []

    cached = vplan_cache.read(repo_id, sha)
    if cached is not None and cached.get("checkpoint"):
        ck = CheckpointSummary.from_dict(cached["checkpoint"])
    else:
        try:
            ck = _hub_checkpoint(api, repo_id, sha, siblings, endpoint, token, cache, t, notes)
        except Exception as e:  # noqa: BLE001
            mapped = translate(e, "safetensors headers")
            if mapped is None:
                raise
            raise mapped from e
        vplan_cache.write(repo_id, sha, ck, gated, tok)
    return ModelSource(repo_id, sha, "hub", config, ck, tuple(notes), gated, tok)


def _hub_checkpoint(api, repo_id, sha, siblings, endpoint, token, cache, t, notes) -> CheckpointSummary | None:
    from huggingface_hub import hf_hub_download

    if "model.safetensors.index.json" in siblings or "model.safetensors" in siblings:
        meta = _hub_safetensors_metadata(api, repo_id, sha, siblings, endpoint, token, cache, t)
        triples = ((name, tm.dtype, tm.shape) for fm in meta[1].values() for name, tm in fm.tensors.items())
        ck = summarize_tensors(triples, files=meta[1].keys())
        declared = (meta[0] or {}).get("total_size")
        if declared is not None and int(declared) != ck.total_bytes:
            notes.append(f"index total_size {int(declared):,} differs from the shard headers' {ck.total_bytes:,} bytes")
        return ck
    if "pytorch_model.bin.index.json" in siblings:
        path = hf_hub_download(repo_id, "pytorch_model.bin.index.json", revision=sha, endpoint=endpoint,
                               token=token, cache_dir=cache, etag_timeout=t)
        return index_only(Path(path), "pytorch-bin")
    bins = {n: s for n, s in siblings.items() if re.fullmatch(r"pytorch_model(-\d+-of-\d+)?\.bin", n)}
    if bins and all(s is not None for s in bins.values()):
        return file_sizes(bins)
    notes.append("no safetensors or pytorch_model*.bin weights found in the repo: checkpoint size unknown")
    return None


def _hub_safetensors_metadata(api, repo_id, sha, siblings, endpoint, token, cache, t):
    """(index metadata, {shard: SafetensorsFileMetadata}) via Range requests on each shard's header.

    Like ``HfApi.get_safetensors_metadata`` but the index lands in ``cache`` (that helper downloads it into the
    cache fixed at import), with no existence probes and no progress bar.
    """
    from concurrent.futures import ThreadPoolExecutor

    from huggingface_hub import hf_hub_download

    if "model.safetensors.index.json" in siblings:
        path = hf_hub_download(repo_id, "model.safetensors.index.json", revision=sha, endpoint=endpoint,
                               token=token, cache_dir=cache, etag_timeout=t)
        with open(path, encoding="utf-8") as f:
            index = json.load(f)
        shards, declared = sorted(set(index.get("weight_map", {}).values())), index.get("metadata")
    else:
        shards, declared = ["model.safetensors"], None

    def parse(name):
        return name, api.parse_safetensors_file_metadata(repo_id, name, revision=sha, token=token, timeout=t)

    with ThreadPoolExecutor(max_workers=min(8, len(shards))) as pool:
        return declared, dict(pool.map(parse, shards))
