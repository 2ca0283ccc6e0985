"""Prompts or JSONL in, JSONL out: one record appended and flushed per prompt, resumable.

Input records: ``{"id": ..., "prompt": "..."}`` or ``{"id": ..., "messages": [{"role": ..., "content": ...}]}``.
Output records: ``{"id", "output", "prompt_tokens", "new_tokens", "seconds", "tokens_per_s", "finish_reason"}``.
A rerun skips ids already in the output file; a torn last line (the job was killed mid-write) is cut off first.
Greedy decoding unless ``do_sample``.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from vplan.planner.errors import RunError, UsageError

from vplan.runtime.report import Log, RunReport, peak_measures, stderr_log


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


def encode(tokenizer, record: dict, *, chat_template: bool = True):
    """Token ids [1, n] for a record; the chat template is applied when the tokenizer has one."""
    has_template = chat_template and bool(getattr(tokenizer, "chat_template", None))
    if "messages" in record and not has_template:
        raise UsageError(f"record {record['id']!r} has \"messages\" but the tokenizer has no chat template; give \"prompt\" text instead")
    if has_template:
        messages = record.get("messages") or [{"role": "user", "content": record["prompt"]}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    return tokenizer(record["prompt"], return_tensors="pt")["input_ids"]


def input_device(model):
    """Where inputs go: the first real (non-meta) parameter's device; offload hooks move them onwards."""
    for p in model.parameters():
        if p.device.type != "meta":
            return p.device
    return "cpu"


def generate_record(model, tokenizer, record: dict, *, max_new_tokens: int, do_sample: bool = False,
                    temperature: float | None = None, chat_template: bool = True) -> dict:
    import torch

    ids = encode(tokenizer, record, chat_template=chat_template).to(input_device(model))
    gen = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if do_sample:
        if temperature is not None:
            gen["temperature"] = temperature
    else:
        gen.update(temperature=None, top_p=None, top_k=None)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=pad, **gen)
    seconds = time.perf_counter() - t0
    new = out[0, ids.shape[1]:].tolist()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    finish = "eos" if new and new[-1] in eos_ids else "length"
    return {"id": record["id"], "output": tokenizer.decode(new, skip_special_tokens=True), "prompt_tokens": int(ids.shape[1]),
            "new_tokens": len(new), "seconds": round(seconds, 4), "tokens_per_s": round(len(new) / seconds, 2) if seconds > 0 else 0.0,
            "finish_reason": finish, "token_ids": new}


class _Progress:
    """A rich bar on a terminal, one plain line per record in batch logs."""

    def __init__(self, total: int, skipped: int, log: Log, tty: bool):
        self.log, self.total, self.bar = log, total, None
        if tty:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
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


def run_records(model, tokenizer, records: Iterable[dict], plan, *, output: str | os.PathLike | None = None,
                max_new_tokens: int | None = None, do_sample: bool = False, temperature: float | None = None,
                chat_template: bool = True, log: Log = stderr_log, tty: bool | None = None,
                on_record: Callable[[dict], None] | None = None, keep_token_ids: bool = False) -> RunReport:
    """Generate for each record not yet in ``output``; append + flush + fsync each result as it is made.

    ``on_record`` is called with each finished output record (after it is on disk). Out-of-memory raises
    :class:`RunError` with the plan's and the measured figures; records already written stay intact.
    """
    from vplan.runtime.transformers.load import _failure_figures, is_oom

    records = list(records)
    max_new = max_new_tokens or plan.workload.max_new_tokens
    done = done_ids(output) if output else set()
    todo = [r for r in records if id_key(r["id"]) not in done]
    skipped = len(records) - len(todo)
    if skipped:
        log(f"[*] Resuming: {skipped} of {len(records)} records already in {output}, {len(todo)} to go")
    tty = sys.stderr.isatty() if tty is None else tty
    progress = _Progress(len(records), skipped, log, tty)
    fh = open(output, "a", encoding="utf-8") if output else None
    n_tokens, t_total, n_done = 0, 0.0, 0
    try:
        for rec in todo:
            try:
                result = generate_record(model, tokenizer, rec, max_new_tokens=max_new, do_sample=do_sample,
                                         temperature=temperature, chat_template=chat_template)
            except Exception as e:
                if not is_oom(e):
                    raise
                where = f"; {n_done + skipped} records are in {output}, rerun to resume" if output else ""
                raise RunError(f"out of memory generating record {rec['id']!r} ({plan.workload.context_tokens}-token context "
                               f"planned); {_failure_figures(plan)}{where}; re-plan with a shorter --context or --batch") from e
            if not keep_token_ids:
                result.pop("token_ids")
            if fh:
                fh.write(json.dumps(result, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            n_done += 1
            n_tokens += result["new_tokens"]
            t_total += result["seconds"]
            progress.update(skipped + n_done, result)
            if on_record:
                on_record(result)
    finally:
        progress.close()
        if fh:
            fh.close()
    report = RunReport(len(records), n_done, skipped, n_tokens, t_total, peak_measures(plan))
    log(f"[*] Generated {n_done} record(s), {n_tokens} new tokens in {t_total:.2f} s ({report.tokens_per_s:.1f} tokens/s overall)")
    return report
