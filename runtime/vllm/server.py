"""`vllm serve` for a plan on this node, started by `vplan run` when no server is given (one-node plans).

The command line is the plan's (planner/plan/vllm_serve.py), the same the sbatch script runs. The server gets its
own session (process group), so stopping it reaches the engine core and every worker vLLM spawned: SIGTERM to the
group, SIGKILL after a grace period. Its output goes to a log file that the report parses.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

from vplan.planner.errors import RunError
from vplan.planner.plan.contract import Plan
from vplan.planner.plan.vllm_serve import serve_argv

from vplan.runtime.report import Log, stderr_log
from vplan.runtime.vllm.client import Client, wait_healthy

STOP_GRACE_S = 30
LOG_TAIL_LINES = 25


def vllm_executable() -> str:
    """The `vllm` command of this environment (beside this Python), else the first on PATH."""
    here = Path(sys.executable).parent / "vllm"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    found = shutil.which("vllm")
    if not found:
        raise ModuleNotFoundError("No module named 'vllm'", name="vllm")  # the CLI turns this into its install hint
    return found


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class Server:
    """A running `vllm serve`; ``stop()`` (or leaving the ``with`` block) ends it and everything it started."""

    def __init__(self, process: subprocess.Popen, client: Client, log_path: Path, log: Log):
        self.process, self.client, self.log_path, self.log = process, client, log_path, log

    @property
    def endpoint(self) -> str:
        return self.client.api

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        pgid = self.process.pid  # start_new_session: the server leads its own process group
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _group_alive(pgid):
                self.process.poll()
                time.sleep(0.2)
            if not _group_alive(pgid):
                break
        self.process.poll()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def start_server(plan: Plan, *, log_path: str | os.PathLike, model_path: str | None = None, port: int | None = None,
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None, timeout_s: float = 900,
                 log: Log = stderr_log) -> Server:
    """Start the plan's server on this node and wait for /health; RunError (with the log's end) if it does not come up."""
    if plan.nodes > 1:
        raise RunError(f"{plan.model_id} is planned on {plan.nodes} nodes: run it through its sbatch script "
                       "(vplan render-sbatch PLAN --input ... --output ...), which starts vLLM on every node")
    argv = [vllm_executable(), *serve_argv(plan, model_path=model_path, port=port), *extra_args]
    path = Path(log_path)
    log(f"[*] Starting vLLM: {' '.join(argv)}")
    log(f"[*] vLLM log: {path}")
    with open(path, "ab") as fh:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, env=dict(env) if env is not None else None)
    port = port if port is not None else plan.vllm.port
    server = Server(proc, Client(f"http://127.0.0.1:{port}/v1"), path, log)
    try:
        seconds = wait_healthy(server.client, timeout_s=timeout_s, alive=server.alive)
    except (RunError, KeyboardInterrupt) as e:
        server.stop()
        if isinstance(e, KeyboardInterrupt):
            raise
        log(f"[!] the end of {path}:")
        for line in log_tail(path).splitlines():
            log(f"[!]   {line}")
        raise RunError(f"{e.message} (exit code {proc.returncode}); its log ends above, in full at {path}") from None
    log(f"[*] vLLM is serving at {server.endpoint} ({seconds:.0f} s after start)")
    return server
