"""JSONL runs: interrupted and resumed without losing or duplicating a record; torn lines; OOM keeps partial output."""
from __future__ import annotations

import json

import pytest

from vplan.planner.errors import RunError, UsageError
from vplan.runtime.records import done_ids, read_records
from vplan.runtime.transformers.generate import run_records
from vplan.runtime.transformers.load import load_planned

from .conftest import PROMPTS, layer_map, make_plan


@pytest.fixture(scope="module")
def loaded(tiny_models):
    plan = make_plan(tiny_models["llama"], layer_map(4, ["cpu"] * 4), max_new_tokens=6)
    model, tok, _ = load_planned(plan, log=lambda _l: None, tty=False)
    return plan, model, tok


def _records(n=7):
    recs = [{"id": i, "prompt": PROMPTS[i % 3] + f" w{i}"} for i in range(n)]
    recs[1] = {"id": "chat-1", "messages": [{"role": "system", "content": "w7"}, {"role": "user", "content": "w8 w9"}]}
    return recs


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _quiet(**kw):
    return dict(log=lambda _l: None, tty=False, **kw)


def test_interrupted_then_resumed_equals_one_run(loaded, tmp_path):
    plan, model, tok = loaded
    recs = _records()
    full = tmp_path / "full.jsonl"
    run_records(model, tok, recs, plan, output=full, **_quiet())

    out = tmp_path / "out.jsonl"
    seen = []

    def stop_after_3(rec):
        seen.append(rec["id"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_records(model, tok, recs, plan, output=out, **_quiet(on_record=stop_after_3))
    assert len(out.read_text().splitlines()) == 3
    # the job was killed mid-write of record 4: a torn last line
    with open(out, "a") as fh:
        fh.write('{"id": 3, "output": "w1 w2')
    logs = []
    rep = run_records(model, tok, recs, plan, output=out, log=logs.append, tty=False)
    assert rep.records_skipped == 3 and rep.records_done == 4
    assert any(line.startswith("[*] Resuming: 3 of 7 records already in") for line in logs)
    got = [json.loads(x) for x in out.read_text().splitlines()]
    want = [json.loads(x) for x in full.read_text().splitlines()]
    assert [g["id"] for g in got] == [r["id"] for r in recs]  # each id once, in order
    strip = lambda r: {k: r[k] for k in ("id", "output", "new_tokens", "prompt_tokens", "finish_reason")}  # noqa: E731
    assert [strip(g) for g in got] == [strip(w) for w in want]  # greedy: same text as the uninterrupted run
    # a third run does nothing
    rep = run_records(model, tok, recs, plan, output=out, **_quiet())
    assert rep.records_done == 0 and rep.records_skipped == 7


def test_output_record_fields(loaded, tmp_path):
    plan, model, tok = loaded
    out = tmp_path / "o.jsonl"
    rep = run_records(model, tok, _records(2), plan, output=out, max_new_tokens=4, **_quiet())
    rec = json.loads(out.read_text().splitlines()[0])
    assert set(rec) == {"id", "output", "prompt_tokens", "new_tokens", "seconds", "tokens_per_s", "finish_reason"}
    assert 1 <= rec["new_tokens"] <= 4 and rec["seconds"] > 0 and rec["tokens_per_s"] > 0
    assert rep.new_tokens == sum(json.loads(x)["new_tokens"] for x in out.read_text().splitlines())
    assert rep.tokens_per_s > 0
    assert rep.peak[-1].device == "cpu" and rep.peak[-1].measured_bytes > 0


def test_oom_keeps_partial_output(loaded, tmp_path, monkeypatch):
    import torch

    plan, model, tok = loaded
    out = tmp_path / "o.jsonl"
    calls = {"n": 0}
    real = model.generate

    def generate(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*a, **kw)

    monkeypatch.setattr(model, "generate", generate)
    with pytest.raises(RunError) as e:
        run_records(model, tok, _records(5), plan, output=out, **_quiet())
    msg = e.value.message
    assert e.value.exit_code == 5
    assert msg.startswith("out of memory generating record 2 (256-token context planned); planned: cpu ")
    assert "measured at failure: process RSS" in msg and f"2 records are in {out}, rerun to resume" in msg
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [0, "chat-1"]


def test_bad_inputs(tmp_path, loaded):
    (tmp_path / "in.jsonl").write_text('{"id": 1, "prompt": "a"}\n{oops\n')
    with pytest.raises(UsageError, match=r"in.jsonl:2 is not JSON"):
        read_records(tmp_path / "in.jsonl")
    with pytest.raises(UsageError, match="appears twice"):
        read_records(_write(tmp_path / "d.jsonl", [{"id": 1, "prompt": "a"}, {"id": 1, "prompt": "b"}]))
    with pytest.raises(UsageError, match='needs "id" and "prompt"'):
        read_records(_write(tmp_path / "n.jsonl", [{"prompt": "a"}]))
    bad = tmp_path / "out.jsonl"
    bad.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(UsageError, match=r"out.jsonl:2 is not an output record"):
        done_ids(bad)
    plan, model, tok = loaded
    tok_no_template = type(tok).from_pretrained(tok.name_or_path)
    tok_no_template.chat_template = None
    with pytest.raises(UsageError, match="no chat template"):
        run_records(model, tok_no_template, [_records(2)[1]], plan, **_quiet())
