"""transformers ``generate()`` over the records, one at a time (the JSONL in/out and resuming: runtime.records).

Greedy decoding unless ``do_sample``.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable

from vplan.planner.errors import RunError, UsageError

from vplan.runtime.records import Results, output_record
from vplan.runtime.report import Log, RunReport, peak_measures, stderr_log


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
    return {**output_record(record["id"], tokenizer.decode(new, skip_special_tokens=True), prompt_tokens=int(ids.shape[1]),
                            new_tokens=len(new), seconds=seconds, finish_reason=finish), "token_ids": new}


def run_records(model, tokenizer, records: Iterable[dict], plan, *, output: str | os.PathLike | None = None,
                max_new_tokens: int | None = None, do_sample: bool = False, temperature: float | None = None,
                chat_template: bool = True, log: Log = stderr_log, tty: bool | None = None,
                on_record: Callable[[dict], None] | None = None, keep_token_ids: bool = False) -> RunReport:
    """Generate for each record not yet in ``output``; append + flush + fsync each result as it is made.

    ``on_record`` is called with each finished output record (after it is on disk). Out-of-memory raises
    :class:`RunError` with the plan's and the measured figures; records already written stay intact.
    """
    from vplan.runtime.transformers.load import _failure_figures, is_oom

    max_new = max_new_tokens or plan.workload.max_new_tokens
    results = Results(list(records), output, log=log, tty=sys.stderr.isatty() if tty is None else tty, on_record=on_record)
    try:
        for rec in results.todo:
            try:
                result = generate_record(model, tokenizer, rec, max_new_tokens=max_new, do_sample=do_sample,
                                         temperature=temperature, chat_template=chat_template)
            except Exception as e:
                if not is_oom(e):
                    raise
                raise RunError(f"out of memory generating record {rec['id']!r} ({plan.workload.context_tokens}-token context "
                               f"planned); {_failure_figures(plan)}{results.resume_hint}; re-plan with a shorter --context or "
                               "--batch") from e
            if not keep_token_ids:
                result.pop("token_ids")
            results.add(result)
    finally:
        results.close()
    report = RunReport(results.total, results.done, results.skipped, results.tokens, results.seconds, peak_measures(plan))
    log(f"[*] Generated {results.done} record(s), {results.tokens} new tokens in {results.seconds:.2f} s "
        f"({report.tokens_per_s:.1f} tokens/s overall)")
    return report
