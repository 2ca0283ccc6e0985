"""`vplan run` for a vLLM plan: the records through the plan's engine, then the engine's figures against the plan.

As a client of a running server (``endpoint``: the job's, exported as ``VPLAN_ENDPOINT``), or by starting
`vllm serve` with the plan's flags on this node (one-node plans) and stopping it at the end, on failure and on
SIGTERM/Ctrl-C. Records go out ``concurrency`` at a time (default: the plan's workload batch, which the KV pool was
sized to hold) and are appended in the order they finish, each line flushed before the next (runtime.records):
a rerun sends only what the output file lacks, so nothing is lost or written twice.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from vplan.planner.errors import RunError, UsageError
from vplan.planner.plan.contract import Plan
from vplan.planner.plan.vllm_serve import vllm_args
from vplan.planner.source.hf_cache import hub_cache_dir, snapshot_dir

from vplan.runtime.records import Results, done_ids, id_key
from vplan.runtime.report import Log, RunReport, stderr_log
from vplan.runtime.vllm.client import Client, RequestFailed, Sampling, wait_healthy
from vplan.runtime.vllm.figures import EngineReport, compare, engine_figures, render_report
from vplan.runtime.vllm.server import start_server

START_WAIT_S = 900  # a server this command starts: loading, the profiling run, CUDA graphs (the job scripts' minimum)
CLIENT_WAIT_S = 120  # a server given by --endpoint: the job waited for it already; a wrong URL fails in two minutes


def model_folder(plan: Plan, model_path: str | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The checkpoint folder on this node: --model-path, a local plan's folder, or the HF cache snapshot."""
    if model_path:
        return Path(model_path)
    if plan.source == "local":
        return Path(plan.model_id)
    return snapshot_dir(plan.model_id, plan.revision, hub_cache_dir(env=env))


def has_chat_template(folder: Path | None) -> bool | None:
    """Whether the model's tokenizer has a chat template (None: the files are not on this node)."""
    if folder is None or not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return bool(cfg.get("chat_template"))


def send_records(client: Client, model: str, records: Sequence[dict], *, sampling: Sampling, chat: bool,
                 output: str | os.PathLike | None = None, concurrency: int = 1, log: Log = stderr_log,
                 tty: bool | None = None, on_record: Callable[[dict], None] | None = None) -> RunReport:
    """Send what ``output`` lacks, ``concurrency`` requests at a time; each answer is appended as it arrives.

    A failed request stops new ones; the answers already on their way are still written, then RunError names the
    record and how many are safe in the output file.
    """
    results = Results(list(records), output, log=log, tty=sys.stderr.isatty() if tty is None else tty, on_record=on_record)
    failure = None
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="vplan-request")
    try:
        futures = [pool.submit(client.generate, model, rec, sampling, chat=chat) for rec in results.todo]
        for fut in as_completed(futures):
            try:
                results.add(fut.result())
            except CancelledError:
                continue
            except (RequestFailed, RunError) as e:
                if failure is None:
                    failure = e
                    for f in futures:
                        f.cancel()
    finally:
        results.close()
        pool.shutdown(wait=failure is not None, cancel_futures=True)
    seconds = time.perf_counter() - t0
    if failure is not None:
        raise RunError(f"{failure}{results.resume_hint}" + ("; fix or remove that record" if isinstance(failure, RequestFailed) else ""))
    report = RunReport(results.total, results.done, results.skipped, results.tokens, seconds)
    log(f"[*] Generated {results.done} record(s), {results.tokens} new tokens in {seconds:.2f} s ({report.tokens_per_s:.1f} tokens/s "
        f"overall, {concurrency} request(s) at a time)")
    return report


@dataclass(frozen=True)
class VllmRun:
    endpoint: str | None  # None: nothing was left to send, so no server was asked
    engine: EngineReport | None
    run: RunReport

    def to_dict(self) -> dict:
        return {"endpoint": self.endpoint, "engine": self.engine.to_dict() if self.engine else None, "run": self.run.to_dict()}


def engine_report(plan: Plan, client: Client, log_path: str | os.PathLike | None, log: Log) -> EngineReport:
    log_text = ""
    if log_path:
        try:
            log_text = Path(log_path).read_text(errors="replace")
        except OSError:
            log(f"[!] engine log {log_path} not readable: its figures are left out")
    figures = engine_figures(metrics_text=client.metrics(), log_text=log_text, version=client.version())
    rows = compare(plan, figures)
    render_report(rows, figures, log)
    return EngineReport(figures, tuple(rows))


def check_server(plan: Plan, client: Client, log: Log) -> None:
    from vplan.runtime.preflight.vllm import server_preflight

    pre = server_preflight(plan, client)
    for c in pre.failures:
        log(c.line())
    pre.raise_for_failures()
    log(f"[*] Server preflight passed ({'; '.join(c.detail for c in pre.checks if c.name != 'plan')})")


class _TermAsInterrupt:
    """SIGTERM (scancel, a job's time limit) raises KeyboardInterrupt, so the server is stopped on the way out."""

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


def run_vllm(plan: Plan, records: Sequence[dict], *, output: str | os.PathLike | None = None, endpoint: str | None = None,
             model_path: str | None = None, max_new_tokens: int | None = None, do_sample: bool = False,
             temperature: float | None = None, chat_template: bool = True, concurrency: int | None = None,
             engine_log: str | os.PathLike | None = None, server_args: Sequence[str] = (),
             server_env: Mapping[str, str] | None = None, health_timeout_s: float | None = None, server_preflight: bool = True,
             log: Log = stderr_log,
             tty: bool | None = None, on_record: Callable[[dict], None] | None = None) -> VllmRun:
    """The records through the plan's vLLM: the job's server at ``endpoint``, or one started here and stopped after."""
    a = vllm_args(plan)
    template = has_chat_template(model_folder(plan, model_path)) if chat_template else False
    if template is None:
        log("[!] the model files are not on this node, so its chat template is unknown: prompts go to /v1/completions as text")
    if not template and any("messages" in r for r in records):
        raise UsageError("records with \"messages\" need a chat template, and this model has none (or --no-chat-template "
                         "was given); give \"prompt\" text instead")
    if output and all(id_key(r["id"]) in done_ids(output) for r in records):
        log(f"[*] All {len(records)} records are already in {output}: nothing to send")
        return VllmRun(None, None, RunReport(len(records), 0, len(records), 0, 0.0))
    sampling = Sampling(max_new_tokens or plan.workload.max_new_tokens, do_sample, temperature)
    concurrency = concurrency or min(plan.workload.batch, a.max_num_seqs)
    server = None
    with _TermAsInterrupt():
        try:
            if endpoint:
                client = Client(endpoint)
                if not client.healthy():
                    log(f"[*] Waiting for the vLLM server at {client.root}")
                    wait_healthy(client, timeout_s=health_timeout_s or CLIENT_WAIT_S)
                if server_preflight:
                    check_server(plan, client, log)
            else:
                engine_log = engine_log or Path(tempfile.gettempdir()) / f"vplan-vllm-{os.getpid()}.log"
                server = start_server(plan, log_path=engine_log, model_path=model_path, extra_args=server_args,
                                      env=server_env, timeout_s=health_timeout_s or START_WAIT_S, log=log)
                client = server.client
            report = engine_report(plan, client, engine_log, log)
            run = send_records(client, client.model(), records, sampling=sampling, chat=bool(template),
                               output=output, concurrency=concurrency, log=log, tty=tty, on_record=on_record)
        finally:
            if server is not None:
                log("[*] Stopping the vLLM server")
                server.stop()
    return VllmRun(client.api, report, run)
