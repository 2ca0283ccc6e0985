"""JSONL in, JSONL out, for every engine: the input records, the output file, resuming, progress.

Input records: ``{"id": ..., "prompt": "..."}`` or ``{"id": ..., "messages": [{"role": ..., "content": ...}]}``.
Output records (the same for every engine): ``{"id", "output", "prompt_tokens", "new_tokens", "seconds",
"tokens_per_s", "finish_reason"}``, one line appended, flushed and fsynced per finished record, so a killed job
loses only the records still in flight. A rerun skips ids already in the output file (a torn last line is cut
off first), so nothing is lost or written twice.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Callable

from vplan.planner.errors import UsageError

from vplan.runtime.report import Log


def id_key(record_id) -> str:
    """Ids compare by their JSON form: 1 and "1" are different records."""
    return json.dumps(record_id, sort_keys=True)


def read_records(path: str | os.PathLike) -> list[dict]:
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except FileNotFoundError:
        raise UsageError(f"input file {str(p)!r} does not exist") from None
    records, seen = [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{p}:{n} is not JSON ({e.msg}); each line must be an object with \"id\" and \"prompt\" or \"messages\"") from None
        if not isinstance(rec, dict) or "id" not in rec or not ("prompt" in rec or "messages" in rec):
            raise UsageError(f"{p}:{n}: each line needs \"id\" and \"prompt\" (text) or \"messages\" (chat list)")
        if "prompt" in rec and not isinstance(rec["prompt"], str):
            raise UsageError(f"{p}:{n}: \"prompt\" must be a string")
        if "messages" in rec and not (isinstance(rec["messages"], list) and all(
                isinstance(m, dict) and "role" in m and "content" in m for m in rec["messages"])):
            raise UsageError(f"{p}:{n}: \"messages\" must be a list of {{\"role\", \"content\"}} objects")
        key = id_key(rec["id"])
        if key in seen:
            raise UsageError(f"{p}:{n}: id {rec['id']!r} appears twice; ids must be unique for resuming")
        seen.add(key)
        records.append(rec)
    return records


def done_ids(output: str | os.PathLike) -> set[str]:
    """Ids already written; cuts a torn last line (no trailing newline) so the file is valid JSONL again."""
    p = Path(output)
    if not p.exists():
        return set()
    data = p.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(p, "r+b") as fh:
            fh.truncate(cut)
        data = data[:cut]
    out = set()
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.add(id_key(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise UsageError(f"{p}:{n} is not an output record; fix or remove that line, then rerun to resume") from None
    return out


def pending(records: list[dict], output: str | os.PathLike | None, log: Log) -> tuple[list[dict], int]:
    """(records still to generate, how many the output file already holds)."""
    done = done_ids(output) if output else set()
    todo = [r for r in records if id_key(r["id"]) not in done]
    skipped = len(records) - len(todo)
    if skipped:
        log(f"[*] Resuming: {skipped} of {len(records)} records already in {output}, {len(todo)} to go")
    return todo, skipped


def output_record(record_id, text: str, *, prompt_tokens: int, new_tokens: int, seconds: float, finish_reason: str) -> dict:
    """One output line, in the format every engine writes."""
    return {"id": record_id, "output": text, "prompt_tokens": int(prompt_tokens), "new_tokens": int(new_tokens),
            "seconds": round(seconds, 4), "tokens_per_s": round(new_tokens / seconds, 2) if seconds > 0 else 0.0,
            "finish_reason": finish_reason}


class OutputFile:
    """The output JSONL, opened for appending: each record is one line, flushed and fsynced before the next
    (thread-safe, so concurrent requests may finish in any order). ``None`` as the path writes nothing."""

    def __init__(self, path: str | os.PathLike | None):
        self._fh = open(path, "a", encoding="utf-8") if path else None
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        if self._fh is None:
            return
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if self._fh:
            self._fh.close()

    def __enter__(self) -> "OutputFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Progress:
    """A rich bar on a terminal, one plain line per record in batch logs."""

    def __init__(self, total: int, skipped: int, log: Log, tty: bool):
        self.log, self.total, self.bar = log, total, None
        if tty:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self.bar = Bar(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                           TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task("gen", total=total, completed=skipped, rate="")
            self.bar.start()

    def update(self, n: int, rec: dict) -> None:
        if self.bar:
            self.bar.update(self.task, advance=1, rate=f"{rec['tokens_per_s']:.1f} tokens/s")
        else:
            self.log(f"[*] record {n}/{self.total} id={rec['id']!r}: {rec['new_tokens']} tokens in {rec['seconds']:.2f} s "
                     f"({rec['tokens_per_s']:.1f} tokens/s)")

    def close(self) -> None:
        if self.bar:
            self.bar.stop()


class Results:
    """Where a run's finished records go, whatever the engine: the output file (appended, flushed, fsynced), the
    progress display, the caller's ``on_record``, the counts. ``todo`` is what the output file still lacks."""

    def __init__(self, records: list[dict], output: str | os.PathLike | None, *, log: Log, tty: bool,
                 on_record: Callable[[dict], None] | None = None):
        self.output, self.total, self.on_record = output, len(records), on_record
        self.todo, self.skipped = pending(records, output, log)
        self.file = OutputFile(output)
        self.progress = Progress(self.total, self.skipped, log, tty)
        self.done, self.tokens, self.seconds = 0, 0, 0.0  # records and new tokens written now, their summed seconds

    def add(self, result: dict) -> None:
        self.file.write(result)
        self.done += 1
        self.tokens += result["new_tokens"]
        self.seconds += result["seconds"]
        self.progress.update(self.skipped + self.done, result)
        if self.on_record:
            self.on_record(result)

    @property
    def resume_hint(self) -> str:
        """For an error message: how many records are safe, and that a rerun resumes."""
        return f"; {self.skipped + self.done} records are in {self.output}, rerun to resume" if self.output else ""

    def close(self) -> None:
        self.progress.close()
        self.file.close()
