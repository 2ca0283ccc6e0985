"""A local Hugging Face Hub for tests: stdlib ``http.server`` answering the routes huggingface_hub and
transformers use, for repos built from in-memory files.

Routes: ``HEAD/GET /{repo}/resolve/{rev}/{file}`` (X-Repo-Commit, ETag/X-Linked-Etag, X-Linked-Size,
Content-Length, Range), ``GET /api/models/{repo}[/revision/{rev}]`` (sha, siblings with sizes, gated),
``GET /api/models/{repo}/tree/{rev}[/{path}]`` (``recursive``). Errors carry ``X-Error-Code`` like the Hub:
RepoNotFound (404), GatedRepo (401 without an ``Authorization: Bearer`` token, 403 with a token not allowed),
RevisionNotFound (404), EntryNotFound (404). Model info of a gated repo is public, as on the Hub.

Safetensors shards may be virtual (:class:`VirtualSafetensors`): a real header followed by a declared data
size served as zeros on demand, so a 13.8 GB checkpoint costs nothing. Every request is logged in
``server.requests`` as ``(method, path, authorization)``.

Use: ``from tests.hubserver import hub_server`` in a conftest, or ``HubServer()`` as a context manager.
Pass ``endpoint=server.endpoint`` to huggingface_hub (it reads HF_ENDPOINT only at import) or set
``HF_ENDPOINT`` in a subprocess's environment.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
         "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "F4": 4}


class VirtualSafetensors:
    """A safetensors file whose header is real and whose data are zeros produced on demand.

    ``tensors``: ordered ``{name: (dtype, shape)}``; offsets are laid out in that order.
    """

    def __init__(self, tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None):
        header: dict = {}
        if metadata is not None:
            header["__metadata__"] = metadata
        off = 0
        for name, (dtype, shape) in tensors.items():
            n = (math.prod(shape) * _BITS[dtype] + 7) // 8
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
            off += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.head = struct.pack("<Q", len(raw)) + raw
        self.data_size = off
        self.size = len(self.head) + off
        self.tensors = dict(tensors)

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of the file."""
        end = min(end, self.size)
        if start >= end:
            return b""
        part = self.head[start:end] if start < len(self.head) else b""
        return part + b"\0" * (end - start - len(part))

    def etag(self) -> str:
        return hashlib.sha256(self.head + str(self.size).encode()).hexdigest()


@dataclass
class _Repo:
    repo_id: str
    files: dict
    sha: str
    gated: bool = False
    tokens: frozenset | None = None  # allowed bearer tokens for a gated repo (None: any token)
    branches: dict = field(default_factory=dict)

    def size(self, name: str) -> int:
        f = self.files[name]
        return f.size if isinstance(f, VirtualSafetensors) else len(f)

    def etag(self, name: str) -> str:
        f = self.files[name]
        if isinstance(f, VirtualSafetensors):
            return f.etag()
        if _is_lfs(name):
            return hashlib.sha256(f).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(f) + f).hexdigest()  # git blob id, as the Hub answers


def _is_lfs(name: str) -> bool:
    return name.endswith((".safetensors", ".bin", ".pt", ".model", ".gguf"))


class HubServer:
    """Threaded local Hub on 127.0.0.1 (random port). ``endpoint``, ``add_repo``, ``requests``."""

    def __init__(self):
        self.repos: dict[str, _Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def add_repo(self, repo_id: str, files: dict, *, gated: bool = False, sha: str | None = None,
                 tokens=None, branches: dict | None = None) -> str:
        """Serve ``files`` (name -> bytes | VirtualSafetensors | str) as ``repo_id``; returns the commit sha."""
        files = {k: (v.encode() if isinstance(v, str) else v) for k, v in files.items()}
        if sha is None:
            h = hashlib.sha1(repo_id.encode())
            for k in sorted(files):
                h.update(k.encode() + self._etag_seed(files[k]))
            sha = h.hexdigest()
        self.repos[repo_id] = _Repo(repo_id, files, sha, gated, frozenset(tokens) if tokens else None,
                                    dict(branches or {}))
        return sha

    @staticmethod
    def _etag_seed(f) -> bytes:
        return f.etag().encode() if isinstance(f, VirtualSafetensors) else hashlib.sha1(f).digest()

    def add_folder(self, repo_id: str, folder, **kw) -> str:
        """Serve every file of a folder (e.g. one written by ``save_pretrained``)."""
        from pathlib import Path
        root = Path(folder)
        files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
        return self.add_repo(repo_id, files, **kw)

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, _, _ in self.requests if method is None or m == method)

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_hub: HubServer

    def log_message(self, *args):  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _send(self, code: int, body: bytes = b"", headers: dict | None = None, length: int | None = None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj, code: int = 200, headers: dict | None = None):
        self._send(code, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, code: int, error_code: str, message: str, headers: dict | None = None):
        self._json({"error": message}, code, {"X-Error-Code": error_code, "X-Error-Message": message,
                                               **(headers or {})})

    def _repo_and_rest(self, parts: list[str]):
        hub = self.server_hub
        for n in (2, 1):
            rid = "/".join(parts[:n])
            if rid in hub.repos:
                return hub.repos[rid], parts[n:]
        return None, parts[2:]

    def _rev_ok(self, repo: _Repo, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in ("main", repo.sha):
            return repo.sha
        return repo.branches.get(rev)

    def _auth_ok(self, repo: _Repo) -> int:
        """0 if allowed, else the HTTP status to answer."""
        if not repo.gated:
            return 0
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return 401
        if repo.tokens is not None and auth[7:].strip() not in repo.tokens:
            return 403
        return 0

    # ------------------------------------------------------------------ verbs
    def do_HEAD(self):
        self._route()

    def do_GET(self):
        self._route()

    def _route(self):
        hub = self.server_hub
        u = urlsplit(self.path)
        with hub._lock:
            hub.requests.append((self.command, u.path, self.headers.get("Authorization")))
        parts = [unquote(p) for p in u.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"]:
            return self._api(parts[2:], parse_qs(u.query))
        repo, rest = self._repo_and_rest(parts)
        if repo is None:
            if "resolve" in parts:
                return self._error(404, "RepoNotFound", "Repository not found")
            return self._error(404, "NotFound", "Not found")
        if len(rest) < 3 or rest[0] != "resolve":
            return self._error(404, "NotFound", "Not found")
        return self._resolve(repo, rest[1], "/".join(rest[2:]))

    def _resolve(self, repo: _Repo, rev: str, name: str):
        denied = self._auth_ok(repo)
        if denied:
            return self._error(denied, "GatedRepo", f"Access to model {repo.repo_id} is restricted. You must have "
                                                    "access to it and be authenticated to access it. Please log in.")
        sha = self._rev_ok(repo, rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if name not in repo.files:
            return self._error(404, "EntryNotFound", f"Entry not found: {name}", {"X-Repo-Commit": sha})
        f = repo.files[name]
        size = repo.size(name)
        etag = repo.etag(name)
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if _is_lfs(name):
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = size
        start, end, code = 0, size, 200
        rng = self.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", (rng or "").strip())
        if m and size > 0:
            if m.group(1):
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            else:  # suffix range
                start = max(0, size - int(m.group(2)))
            if start >= size:
                return self._send(416, b"", {"Content-Range": f"bytes */{size}"})
            code = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        if self.command == "HEAD":
            return self._send(code, b"", headers, length=end - start)
        if isinstance(f, VirtualSafetensors) and end - start > 64 * 1024 * 1024:
            return self._error(416, "RangeTooLarge", "virtual shards serve at most 64 MiB per request")
        body = f.read(start, end) if isinstance(f, VirtualSafetensors) else f[start:end]
        return self._send(code, body, headers)

    def _api(self, parts: list[str], query: dict):
        repo, rest = self._repo_and_rest(parts)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        rev = "main"
        if rest[:1] == ["revision"] and len(rest) >= 2:
            rev, rest = "/".join(rest[1:]), []
        if rest[:1] == ["tree"] and len(rest) >= 2:
            return self._tree(repo, rest[1], "/".join(rest[2:]), query)
        if rest:
            return self._error(404, "NotFound", "Not found")
        sha = self._rev_ok(repo, rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        siblings = [{"rfilename": n, "size": repo.size(n)} for n in sorted(repo.files)]
        return self._json({"_id": repo.repo_id, "id": repo.repo_id, "modelId": repo.repo_id, "sha": sha,
                           "private": False, "disabled": False, "gated": "manual" if repo.gated else False,
                           "downloads": 0, "likes": 0, "tags": [], "library_name": "transformers",
                           "siblings": siblings})

    def _tree(self, repo: _Repo, rev: str, path: str, query: dict):
        denied = self._auth_ok(repo)
        if denied:
            return self._error(denied, "GatedRepo", f"Access to model {repo.repo_id} is restricted.")
        sha = self._rev_ok(repo, rev)
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        out, dirs = [], set()
        for name in sorted(repo.files):
            if not name.startswith(prefix):
                continue
            rel = name[len(prefix):]
            segs = rel.split("/")
            for i in range(1, len(segs)):
                d = prefix + "/".join(segs[:i])
                if (recursive or i == 1) and d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0,
                                "path": d})
            if len(segs) > 1 and not recursive:
                continue
            entry = {"type": "file", "oid": repo.etag(name), "size": repo.size(name), "path": name}
            if _is_lfs(name):
                entry["lfs"] = {"oid": repo.etag(name), "size": repo.size(name), "pointerSize": 134}
            out.append(entry)
        if prefix and not out:
            return self._error(404, "EntryNotFound", f"Entry not found: {path}")
        return self._json(out)


@pytest.fixture
def hub_server():
    """A fresh local Hub per test; yields the :class:`HubServer`."""
    with HubServer() as server:
        yield server


@pytest.fixture
def hf_env(tmp_path, monkeypatch):
    """Isolated caches for a test: temp HF_HOME / HF_HUB_CACHE / VPLAN_CACHE, no token, online mode."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    monkeypatch.setenv("VPLAN_CACHE", str(tmp_path / "vplan_cache"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT",
                "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    import huggingface_hub.constants as hc  # its token paths are fixed at import: point them at the temp home

    monkeypatch.setattr(hc, "HF_HOME", str(tmp_path / "hf_home"), raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"), raising=False)
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "hf_home" / "token"), raising=False)
    monkeypatch.setattr(hc, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf_home" / "stored_tokens"), raising=False)
    return tmp_path
