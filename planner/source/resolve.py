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

import json
import os
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from vplan.planner.source import catalog
from vplan.planner.source.checkpoint import CheckpointSummary, summarize_tensors
from vplan.planner.errors import (GatedModelError, HubUnreachableError, MalformedConfigError, ModelNotFoundError,
                     ModelSourceError, NoConfigError, OfflineNoCacheError)

DEFAULT_ENDPOINT = "https://huggingface.co"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model", "spiece.model")
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's numbers came from. ``revision`` is the commit sha (None when no source could tell)."""

    model_id: str  # repo id, or the absolute folder path for a local model
    revision: str | None
    source: str  # "hub" | "cache" | "catalog" | "local"
    config: dict  # config.json content, verbatim
    checkpoint: CheckpointSummary | None
    notes: tuple[str, ...] = ()
    gated: bool | None = None
    tokenizer_files_present: bool | None = None
    provenance: str | None = None  # catalog entries: where the config came from

    def to_dict(self) -> dict:
        return {
            "model_id": self.model_id, "revision": self.revision, "source": self.source, "config": self.config,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None, "notes": list(self.notes),
            "gated": self.gated, "tokenizer_files_present": self.tokenizer_files_present,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSource":
        ck = d.get("checkpoint")
        return cls(
            model_id=d["model_id"], revision=d.get("revision"), source=d["source"], config=dict(d["config"]),
            checkpoint=CheckpointSummary.from_dict(ck) if ck else None, notes=tuple(d.get("notes", ())),
            gated=d.get("gated"), tokenizer_files_present=d.get("tokenizer_files_present"),
            provenance=d.get("provenance"),
        )


# ----------------------------------------------------------------------------------------------- settings
def _truthy(v: str | None) -> bool:
    return (v or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_timeout_s() -> float:
    try:
        return float(os.environ.get("VPLAN_HUB_TIMEOUT", "3"))
    except ValueError:
        return 3.0


def hf_hub_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def vplan_cache_dir() -> Path:
    return Path(os.environ.get("VPLAN_CACHE") or "~/.cache/vplan").expanduser()


# ----------------------------------------------------------------------------------------------- entry
def resolve_model(ref: str, *, revision: str | None = None, offline: bool | None = None,
                  endpoint: str | None = None, token: str | None = None, cache_dir=None) -> ModelSource:
    """Locate ``ref`` (a local folder with config.json, or a Hub repo id) and summarize its checkpoint.

    ``offline=None`` follows ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE``; ``endpoint=None`` follows
    ``HF_ENDPOINT``; ``token=None`` lets huggingface_hub use ``HF_TOKEN`` or the saved login;
    ``cache_dir=None`` follows ``HF_HUB_CACHE``/``HF_HOME``. Raises :class:`ModelSourceError` subclasses.
    """
    ref = str(ref).strip()
    if _looks_local(ref):
        return _resolve_local(ref)
    if not _REPO_ID.match(ref) or ".." in ref:
        raise ModelNotFoundError(f"'{ref}' is neither a Hub repo id (org/name) nor an existing folder: "
                                 "check the id, or pass a folder that holds config.json")
    ep = hub_endpoint(endpoint)
    if offline is None:
        offline = _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))
    if offline:
        return _fallback(ref, revision, cache_dir, "offline mode (HF_HUB_OFFLINE=1 or --offline)", ep, True)
    reason = _probe(ep, hub_timeout_s())
    if reason is None:
        try:
            return _resolve_hub(ref, revision, ep, token, cache_dir)
        except _Unreachable as e:
            reason = str(e)
    return _fallback(ref, revision, cache_dir, reason, ep, False)


class _Unreachable(Exception):
    pass


def _looks_local(ref: str) -> bool:
    if os.path.isdir(os.path.expanduser(ref)):
        return True
    if ref.startswith(("/", "./", "../", "~", ".\\")) or ref.count("/") > 1 or "\\" in ref:
        raise ModelNotFoundError(f"local folder '{ref}' does not exist: check the path, or give a Hub id (org/name)")
    return False


# ----------------------------------------------------------------------------------------------- probe
def _probe(endpoint: str, timeout: float) -> str | None:
    """None if a TCP connection to the endpoint opens, else why not (one phrase). Skipped behind a proxy."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    u = urlsplit(endpoint)
    host = u.hostname or ""
    port = u.port or (443 if u.scheme == "https" else 80)
    out: dict = {}

    def lookup():
        try:
            out["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            out["err"] = e

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(timeout)
    if "addrs" not in out:
        why = "DNS lookup timed out" if t.is_alive() else f"DNS lookup of {host} failed"
        return f"Hub unreachable ({endpoint}): {why}"
    err: OSError | None = None
    for family, stype, proto, _, addr in out["addrs"]:
        try:
            with socket.socket(family, stype, proto) as s:
                s.settimeout(timeout)
                s.connect(addr)
            return None
        except OSError as e:
            err = e
    return f"Hub unreachable ({endpoint}): {getattr(err, 'strerror', None) or err or 'no address'}"


# ----------------------------------------------------------------------------------------------- hub
def _resolve_hub(repo_id, revision, endpoint, token, cache_dir) -> ModelSource:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub import errors as E

    t = hub_timeout_s()
    api = HfApi(endpoint=endpoint, token=token)
    cache = str(hf_hub_cache_dir(cache_dir))

    def translate(e: Exception, what: str):
        if isinstance(e, E.GatedRepoError):
            return GatedModelError(f"{repo_id} is gated: accept its license on the Hub and set HF_TOKEN "
                                   "(or run `hf auth login`)")
        if isinstance(e, E.RevisionNotFoundError):
            return ModelNotFoundError(f"revision '{revision}' of {repo_id} not found on {endpoint}: "
                                      "check the branch, tag or commit sha")
        if isinstance(e, E.RepositoryNotFoundError):
            return ModelNotFoundError(f"{repo_id} not found on {endpoint}: check the id, or pass a local folder "
                                      "(private repos also need HF_TOKEN)")
        if isinstance(e, E.RemoteEntryNotFoundError):
            return NoConfigError(f"{repo_id} has no {what} on {endpoint}: vplan plans transformers models; "
                                 "pass a folder with config.json instead")
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, E.HfHubHTTPError) and status is not None and status < 500:
            return ModelSourceError(f"the Hub at {endpoint} refused {what} of {repo_id} (HTTP {status}): "
                                    "check HF_TOKEN and the id, or retry with --offline")
        if isinstance(e, (E.HfHubHTTPError, OSError)) or type(e).__module__.split(".")[0].startswith("httpx"):
            return _Unreachable(f"Hub unreachable ({endpoint}): {type(e).__name__} {str(e).splitlines()[0][:120]}")
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
    sha = Path(cfg_path).parent.name if _SHA.match(Path(cfg_path).parent.name) else info.sha
    config = _read_config(Path(cfg_path), repo_id)
    siblings = {s.rfilename: s.size for s in (info.siblings or [])}
    gated = bool(info.gated) if info.gated is not None else None
    tok = any(n.split("/")[-1] in _TOKENIZER_FILES for n in siblings) if siblings else None
    notes: list[str] = []

    cached = _read_vplan_cache(repo_id, sha)
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
        _write_vplan_cache(repo_id, sha, ck, gated, tok)
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
        return _index_only(Path(path), "pytorch-bin")
    bins = {n: s for n, s in siblings.items() if re.fullmatch(r"pytorch_model(-\d+-of-\d+)?\.bin", n)}
    if bins and all(s is not None for s in bins.values()):
        return _file_sizes(bins)
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


# ----------------------------------------------------------------------------------------------- fallback
def _fallback(repo_id, revision, cache_dir, reason, endpoint, offline) -> ModelSource:
    hit = _from_hf_cache(repo_id, revision, cache_dir, reason)
    if hit is not None:
        return hit
    entry = catalog.load(repo_id)
    if entry is not None:
        notes = [f"{reason}: using vplan's bundled catalog snapshot of {entry['model_id']}"]
        if entry.get("reconstructed"):
            notes.append("catalog config is reconstructed from published values, not a verbatim Hub file")
        if revision and revision != entry.get("revision"):
            notes.append(f"requested revision '{revision}' could not be checked: the catalog snapshot is "
                         f"{'unpinned' if not entry.get('revision') else 'at ' + entry['revision']}")
        ck = CheckpointSummary.from_dict(entry["checkpoint"]) if entry.get("checkpoint") else None
        return ModelSource(entry["model_id"], entry.get("revision"), "catalog", entry["config"], ck, tuple(notes),
                           entry.get("gated"), None, entry.get("provenance"))
    where = hf_hub_cache_dir(cache_dir)
    if offline:
        raise OfflineNoCacheError(f"{repo_id} is in neither the HF cache ({where}) nor vplan's catalog and offline "
                                  "mode is on: run once with network access (or unset HF_HUB_OFFLINE), or pass a "
                                  "local folder")
    raise HubUnreachableError(f"{repo_id}: {reason}, and the model is in neither the HF cache ({where}) nor "
                              "vplan's catalog: check the network or HF_ENDPOINT, or pass a local folder")


def _from_hf_cache(repo_id, revision, cache_dir, reason) -> ModelSource | None:
    root = hf_hub_cache_dir(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    if revision and _SHA.match(revision):
        sha = revision
    else:
        ref = root / "refs" / (revision or "main")
        if not ref.is_file():
            return None
        sha = ref.read_text().strip()
    snap = root / "snapshots" / sha
    if not (snap / "config.json").is_file():
        return None
    config = _read_config(snap / "config.json", repo_id)
    cached = _read_vplan_cache(repo_id, sha) or {}
    notes = [f"{reason}: using the HF cache ({root}) at commit {sha[:12]}"]
    if cached.get("checkpoint"):
        ck = CheckpointSummary.from_dict(cached["checkpoint"])
    else:
        ck = _checkpoint_from_folder(snap)
        if ck is None:
            notes.append("no checkpoint metadata in the caches: checkpoint size unknown (run once online)")
    files = [p.name for p in snap.iterdir()]
    tok = cached.get("tokenizer_files_present")
    if tok is None and any(n in _TOKENIZER_FILES for n in files):
        tok = True
    return ModelSource(repo_id, sha, "cache", config, ck, tuple(notes), cached.get("gated"), tok)


def _vplan_cache_path(repo_id: str, sha: str) -> Path:
    return vplan_cache_dir() / "checkpoints" / ("models--" + repo_id.replace("/", "--")) / f"{sha}.json"


def _read_vplan_cache(repo_id: str, sha: str | None) -> dict | None:
    if not sha:
        return None
    try:
        with open(_vplan_cache_path(repo_id, sha), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_vplan_cache(repo_id, sha, ck, gated, tok) -> None:
    if not sha:
        return
    path = _vplan_cache_path(repo_id, sha)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"model_id": repo_id, "revision": sha, "gated": gated,
                                   "tokenizer_files_present": tok, "checkpoint": ck.to_dict() if ck else None}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the offline rerun its checkpoint summary


# ----------------------------------------------------------------------------------------------- local
def _resolve_local(ref: str) -> ModelSource:
    folder = Path(os.path.expanduser(ref)).resolve()
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise NoConfigError(f"{folder} has no config.json: pass the folder `save_pretrained` wrote, or a Hub id")
    config = _read_config(cfg, str(folder))
    ck = _checkpoint_from_folder(folder)
    notes = () if ck else ("no safetensors or pytorch_model*.bin weights in the folder: checkpoint size unknown",)
    tok = any((folder / n).is_file() for n in _TOKENIZER_FILES)
    return ModelSource(str(folder), None, "local", config, ck, notes, None, tok)


def _read_config(path: Path, who: str) -> dict:
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


def _checkpoint_from_folder(folder: Path) -> CheckpointSummary | None:
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
            return _index_only(index, "safetensors")
    if shards:
        def triples():
            for s in shards:
                for name, t in read_safetensors_header(folder / s).items():
                    yield name, t["dtype"], t["shape"]
        return summarize_tensors(triples(), files=shards)
    if (folder / "pytorch_model.bin.index.json").is_file():
        return _index_only(folder / "pytorch_model.bin.index.json", "pytorch-bin")
    bins = {p.name: p.stat().st_size for p in folder.glob("pytorch_model*.bin")}
    return _file_sizes(bins) if bins else None


def _index_only(index_path: Path, fmt: str) -> CheckpointSummary | None:
    try:
        idx = json.loads(Path(index_path).read_text())
        total = int(idx["metadata"]["total_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    wm = idx.get("weight_map", {})
    return CheckpointSummary(total, len(wm), {}, {}, fmt, "index total_size only",
                             tuple(sorted(set(wm.values()))))


def _file_sizes(bins: dict[str, int]) -> CheckpointSummary:
    return CheckpointSummary(sum(bins.values()), 0, {}, {}, "pytorch-bin",
                             "file sizes of pytorch_model*.bin (pickle overhead included)", tuple(sorted(bins)))
