"""`vplan run` as a client of a vLLM server, against the HTTP stand-in (tests/vllm/openai_fake.py): the records and
their format, resuming with nothing lost or written twice, refused records, a server that dies, concurrency."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import plans
from tests.vllm.engine import records, write_jsonl
from tests.vllm.openai_fake import FakeVllm
from vplan.planner.errors import RunError, UsageError
from vplan.planner.plan import write_plan
from vplan.runtime.records import output_record
from vplan.runtime.vllm.run import has_chat_template, run_vllm

OUTPUT_KEYS = set(output_record(0, "", prompt_tokens=0, new_tokens=0, seconds=1, finish_reason="eos"))


def _folder(tmp_path: Path, template: bool) -> Path:
    d = tmp_path / ("chat-model" if template else "raw-model")
    d.mkdir()
    cfg = {"chat_template": "{{ messages }}"} if template else {}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


def _plan(folder: Path, **kw):
    return plans.vllm_plan(model_id=str(folder), source="local", revision=None, **kw)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_every_record_once_in_the_transformers_format(tmp_path):
    out = tmp_path / "out.jsonl"
    recs = records(9)
    with FakeVllm() as fake:
        run = run_vllm(_plan(_folder(tmp_path, True)), recs, output=out, endpoint=fake.endpoint, max_new_tokens=5,
                       log=lambda s: None, tty=False)
    got = _lines(out)
    assert sorted(json.dumps(r["id"]) for r in got) == sorted(json.dumps(r["id"]) for r in recs)
    assert all(set(r) == OUTPUT_KEYS and r["new_tokens"] == 5 and r["finish_reason"] == "length" for r in got)
    assert run.run.records_done == 9 and run.run.new_tokens == 45
    # the model has a chat template: prompts go to the chat route too, as transformers applies the template
    assert {route for route, _ in fake.routes} == {"/v1/chat/completions"}
    assert run.engine.figures.kv_cache_tokens == 1_048_576  # the recorded /metrics page


def test_without_a_template_prompts_are_raw_text_and_chats_are_refused(tmp_path):
    folder = _folder(tmp_path, False)
    assert has_chat_template(folder) is False and has_chat_template(tmp_path / "absent") is None
    with FakeVllm() as fake:
        run_vllm(_plan(folder), [{"id": 1, "prompt": "w1 w2"}], output=tmp_path / "o.jsonl", endpoint=fake.endpoint,
                 max_new_tokens=2, log=lambda s: None, tty=False)
        assert fake.routes == [("/v1/completions", "w1 w2")]
        with pytest.raises(UsageError, match="need a chat template"):
            run_vllm(_plan(folder), records(2), output=tmp_path / "p.jsonl", endpoint=fake.endpoint, log=lambda s: None)
    assert _lines(tmp_path / "o.jsonl")[0]["finish_reason"] == "eos"  # vLLM's "stop" in the transformers runtime's word


def test_resume_sends_only_what_the_output_lacks(tmp_path):
    recs = records(8)
    out = tmp_path / "out.jsonl"
    plan = _plan(_folder(tmp_path, True))
    with FakeVllm() as fake:
        run_vllm(plan, recs[:3], output=out, endpoint=fake.endpoint, max_new_tokens=3, log=lambda s: None, tty=False)
        with open(out, "a") as fh:
            fh.write('{"id": "r4", "output": "torn')  # a job killed mid-write
        fake.routes.clear()
        lines: list[str] = []
        run = run_vllm(plan, recs, output=out, endpoint=fake.endpoint, max_new_tokens=3, log=lines.append, tty=False)
    assert len(fake.routes) == 5 and run.run.records_skipped == 3
    assert any("Resuming: 3 of 8 records" in x for x in lines)
    ids = [json.dumps(r["id"]) for r in _lines(out)]
    assert len(ids) == len(set(ids)) == 8


def test_a_refused_record_stops_the_run_and_keeps_what_finished(tmp_path):
    recs = records(6)
    bad = recs[3]["messages"][-1]["content"]
    out = tmp_path / "out.jsonl"
    plan = _plan(_folder(tmp_path, True))
    with FakeVllm(refuse=bad) as fake:
        with pytest.raises(RunError) as e:
            run_vllm(plan, recs, output=out, endpoint=fake.endpoint, concurrency=1, log=lambda s: None, tty=False)
    msg = e.value.message
    assert "record 3" in msg and "400" in msg and "maximum context length" in msg and "rerun to resume" in msg
    written = [r["id"] for r in _lines(out)]  # what finished, plus what was already on its way (r4 at most)
    assert written[:3] == ["r0", 1, "r2"] and 3 not in written and set(written) <= {"r0", 1, "r2", "r4"}
    with FakeVllm() as fake:  # fixed server side: the rerun sends the rest only
        run_vllm(plan, recs, output=out, endpoint=fake.endpoint, log=lambda s: None, tty=False)
        assert len(fake.routes) == 6 - len(written)
    assert sorted(json.dumps(r["id"]) for r in _lines(out)) == sorted(json.dumps(r["id"]) for r in recs)


def test_a_server_that_dies_loses_nothing_written(tmp_path):
    out = tmp_path / "out.jsonl"
    with FakeVllm(die_after=2) as fake:
        with pytest.raises(RunError, match="stopped answering.*2 records are in"):
            run_vllm(_plan(_folder(tmp_path, True)), records(6), output=out, endpoint=fake.endpoint, concurrency=1,
                     log=lambda s: None, tty=False)
    assert len(_lines(out)) == 2


def test_requests_go_out_concurrently_up_to_the_limit(tmp_path):
    with FakeVllm(hold_until=4) as fake:  # requests are answered four at a time
        run_vllm(_plan(_folder(tmp_path, True)), records(12), output=tmp_path / "o.jsonl", endpoint=fake.endpoint,
                 concurrency=4, log=lambda s: None, tty=False)
    assert fake.max_in_flight == 4


def test_default_concurrency_is_the_planned_batch(tmp_path):
    plan = _plan(_folder(tmp_path, True))  # workload.batch 16, max_num_seqs 256
    with FakeVllm(hold_until=16) as fake:
        run_vllm(plan, records(32), output=tmp_path / "o.jsonl", endpoint=fake.endpoint, log=lambda s: None, tty=False)
    assert fake.max_in_flight == plan.workload.batch == 16


def test_server_in_another_version_is_refused(tmp_path):
    with FakeVllm(version="0.9.2") as fake:
        with pytest.raises(Exception) as e:
            run_vllm(_plan(_folder(tmp_path, True)), records(1), output=tmp_path / "o.jsonl", endpoint=fake.endpoint,
                     log=lambda s: None)
    assert "vllm 0.9.2" in str(e.value) and "==0.32.0" in str(e.value)


def test_cli_client_mode_writes_records_and_the_engine_report(tmp_path):
    plan_path = tmp_path / "plan.json"
    write_plan(_plan(_folder(tmp_path, True)), plan_path)
    inp = write_jsonl(tmp_path / "in.jsonl", records(4))
    with FakeVllm() as fake:
        r = subprocess.run([sys.executable, "-m", "vplan.planner.cli", "run", str(plan_path), "--endpoint", fake.endpoint,
                            "--input", str(inp), "--output", str(tmp_path / "out.jsonl"), "--report", str(tmp_path / "r.json"),
                            "--max-new-tokens", "3"], capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "KV cache tokens: planned 163,840, engine 1,048,576 (DIFFERS)" in r.stderr  # a hand plan, a real metrics page
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["run"]["records_done"] == 4 and rep["engine"]["figures"]["num_blocks"] == 8192
    assert len(_lines(tmp_path / "out.jsonl")) == 4


def test_cli_rejects_vllm_options_for_transformers_plans(tmp_path):
    plan_path = tmp_path / "plan.json"
    write_plan(plans.plan(), plan_path)
    r = subprocess.run([sys.executable, "-m", "vplan.planner.cli", "run", str(plan_path), "--prompt", "hi", "--endpoint",
                        "http://127.0.0.1:9/v1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "for vLLM plans" in r.stderr and "Traceback" not in r.stderr
