"""A client of vLLM's OpenAI-compatible server (standard library only: it runs wherever vplan does).

``endpoint`` is the OpenAI base URL, ``http://HOST:PORT/v1`` (what the job exports as ``VPLAN_ENDPOINT``); the
server's own routes (/health, /version, /metrics) sit beside ``/v1``. A record becomes one request:
``"messages"`` (or ``"prompt"`` when the model has a chat template) to /v1/chat/completions, else ``"prompt"`` to
/v1/completions, greedy (temperature 0) unless sampling is asked for.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from vplan.planner.errors import RunError, UsageError

from vplan.runtime.records import output_record

REQUEST_TIMEOUT_S = 3600  # one request: a long generation on a busy server can take many minutes
FINISH = {"stop": "eos", "length": "length"}  # vLLM's finish reasons in the transformers runtime's words


class RequestFailed(Exception):
    """The server answered a request with an error (the record's fault, e.g. a prompt longer than max_model_len)."""


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    do_sample: bool = False
    temperature: float | None = None

    def body(self) -> dict:
        out = {"max_tokens": self.max_new_tokens, "n": 1}
        if not self.do_sample:
            out["temperature"] = 0.0
        elif self.temperature is not None:
            out["temperature"] = self.temperature
        return out


class Client:
    def __init__(self, endpoint: str, timeout_s: float = REQUEST_TIMEOUT_S):
        base = endpoint.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise UsageError(f"--endpoint {endpoint!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
        self.api = base if base.endswith("/v1") else base + "/v1"
        self.root = self.api[: -len("/v1")]
        self.timeout_s = timeout_s

    def _request(self, url: str, body: dict | None = None, timeout_s: float | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as resp:
            return resp.read()

    def get_json(self, path: str, timeout_s: float = 10) -> dict:
        try:
            return json.loads(self._request(self.root + path, timeout_s=timeout_s))
        except (urllib.error.URLError, OSError, json.JSONDecodeError) as e:
            raise RunError(f"the vLLM server at {self.root} did not answer {path} ({_why(e)}); is it running?") from None

    def healthy(self) -> bool:
        try:
            self._request(self.root + "/health", timeout_s=5)
            return True
        except (urllib.error.URLError, OSError):
            return False

    def version(self) -> str:
        return str(self.get_json("/version").get("version", ""))

    def model(self) -> str:
        """The name the server serves (the first of /v1/models)."""
        data = self.get_json("/v1/models").get("data") or []
        if not data:
            raise RunError(f"the vLLM server at {self.root} serves no model (/v1/models is empty)")
        return data[0]["id"]

    def metrics(self) -> str:
        try:
            return self._request(self.root + "/metrics", timeout_s=10).decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError) as e:
            raise RunError(f"the vLLM server at {self.root} did not answer /metrics ({_why(e)})") from None

    def generate(self, model: str, record: dict, sampling: Sampling, *, chat: bool) -> dict:
        """One record through the server: the output record (same fields as the transformers runtime)."""
        if "messages" in record or chat:
            route = "/chat/completions"
            body = {"model": model, "messages": record.get("messages") or [{"role": "user", "content": record["prompt"]}]}
        else:
            route, body = "/completions", {"model": model, "prompt": record["prompt"]}
        body.update(sampling.body())
        t0 = time.perf_counter()
        try:
            answer = json.loads(self._request(self.api + route, body))
        except urllib.error.HTTPError as e:
            raise RequestFailed(f"record {record['id']!r}: the server answered {e.code}: {_server_message(e)}") from None
        except (urllib.error.URLError, OSError) as e:
            raise RunError(f"the vLLM server at {self.root} stopped answering ({_why(e)})") from None
        seconds = time.perf_counter() - t0
        choice = answer["choices"][0]
        text = (choice["message"].get("content") if "message" in choice else choice.get("text")) or ""
        usage = answer.get("usage") or {}
        reason = choice.get("finish_reason") or ""
        return output_record(record["id"], text, prompt_tokens=usage.get("prompt_tokens", 0),
                             new_tokens=usage.get("completion_tokens", 0), seconds=seconds,
                             finish_reason=FINISH.get(reason, reason))


def _why(e: Exception) -> str:
    reason = getattr(e, "reason", None)
    return str(reason if reason is not None else e)


def _server_message(e: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(e.read() or b"{}")
    except (json.JSONDecodeError, OSError):
        return str(e.reason)
    err = body.get("error", body)
    msg = err.get("message") if isinstance(err, dict) else err
    return " ".join(str(msg or e.reason).split())[:500]


def wait_healthy(client: Client, *, timeout_s: float, alive=lambda: True, poll_s: float = 1.0) -> float:
    """Seconds until /health answered; RunError when ``alive()`` turns false or the time runs out."""
    t0 = time.monotonic()
    while not client.healthy():
        if not alive():
            raise RunError(f"the vLLM server exited before it answered {client.root}/health")
        if time.monotonic() - t0 > timeout_s:
            raise RunError(f"the vLLM server did not answer {client.root}/health within {timeout_s:.0f} s")
        time.sleep(poll_s)
    return time.monotonic() - t0
