"""Is the Hub reachable? A cheap TCP probe that runs before huggingface_hub is imported.

DNS in a thread (so a hung resolver costs at most the timeout), then a TCP connect with timeout
``$VPLAN_HUB_TIMEOUT`` (default 3 s). An unreachable Hub then costs milliseconds, not an import and five retries.
Skipped behind a proxy (the proxy decides). Environment variables are read at call time (huggingface_hub reads
some only at import).
"""
from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlsplit

DEFAULT_ENDPOINT = "https://huggingface.co"
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_timeout_s() -> float:
    try:
        return float(os.environ.get("VPLAN_HUB_TIMEOUT", "3"))
    except ValueError:
        return 3.0


def probe(endpoint: str, timeout: float) -> str | None:
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
