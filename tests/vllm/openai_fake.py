"""A stand-in for vLLM's OpenAI-compatible server at its HTTP boundary, for the client's unit tests (the real
server runs in the live tests): the routes `vplan run` uses, answers in vLLM 0.32's shapes (see RESULTS of the
serve probe: usage.prompt_tokens / completion_tokens, finish_reason), and knobs for the failures a run must
survive: a record the server refuses (HTTP 400 with vLLM's error body), a server that dies after N answers.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

METRICS = (Path(__file__).resolve().parents[1] / "fixtures" / "vllm" / "metrics-llama-kv2-tp2.txt").read_text()


class FakeVllm:
    def __init__(self, *, model: str = "tiny", version: str = "0.32.0", refuse: str | None = None,
                 die_after: int | None = None, delay_s: float = 0.05, hold_until: int = 0):
        """``hold_until``: each request waits (up to 10 s) until that many are in flight, so a test sees the
        client's concurrency deterministically, whatever the machine's load."""
        self.model, self.version, self.refuse, self.die_after, self.delay_s = model, version, refuse, die_after, delay_s
        self.hold_until = hold_until
        self.routes: list[tuple[str, str]] = []  # (route, prompt text) of every generation request
        self.in_flight = self.max_in_flight = self.answered = 0
        self.lock = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code: int, body, ctype="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/health":
                    return self._send(200, "", "text/plain")
                if self.path == "/version":
                    return self._send(200, {"version": fake.version})
                if self.path == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": fake.model, "object": "model", "max_model_len": 512}]})
                if self.path == "/metrics":
                    return self._send(200, METRICS, "text/plain")
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat = self.path == "/v1/chat/completions"
                text = " ".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
                with fake.lock:
                    if fake.die_after is not None and fake.answered >= fake.die_after:
                        self.close_connection = True
                        self.connection.close()
                        return
                    fake.routes.append((self.path, text))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    fake.lock.notify_all()
                    fake.lock.wait_for(lambda: fake.in_flight >= fake.hold_until, timeout=10)
                time.sleep(fake.delay_s)
                with fake.lock:
                    fake.in_flight -= 1
                if fake.refuse and fake.refuse in text:
                    return self._send(400, {"error": {"message": "This model's maximum context length is 512 tokens.",
                                                      "type": "BadRequestError", "code": 400}})
                n = body["max_tokens"]
                words = " ".join(f"w{len(text) + i}" for i in range(n))
                choice = ({"index": 0, "message": {"role": "assistant", "content": words}, "finish_reason": "length"}
                          if chat else {"index": 0, "text": words, "finish_reason": "length" if n > 2 else "stop"})
                with fake.lock:
                    fake.answered += 1
                self._send(200, {"id": "cmpl-1", "object": "chat.completion" if chat else "text_completion", "model": fake.model,
                                 "choices": [choice],
                                 "usage": {"prompt_tokens": len(text.split()), "completion_tokens": n,
                                           "total_tokens": len(text.split()) + n}})

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 resets connections when many requests arrive at once

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeVllm":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
