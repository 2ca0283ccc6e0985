"""Shared pieces for the simulator tests: reference peaks (tests/fixtures/sim_reference.json, copied from the
shared simulation material), catalog configs, a cache of simulations run once per session, and the `slow`
marker (deselected unless VPLAN_SLOW=1: full-size sweeps live in benchmarks/accuracy.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("torch")

def pytest_configure(config):
    config.addinivalue_line("markers", "slow: full-size simulations (run with VPLAN_SLOW=1)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VPLAN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow simulation: set VPLAN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def simulated():
    """simulated(model_id, attn, prompt) -> SimResult of the catalog config, batch 1, bf16, 16 new tokens;
    each case is simulated once per session."""
    from vplan.planner.source.catalog import load
    from vplan.runtime.sim.simulate import simulate

    cache = {}

    def run(mid: str, attn: str, prompt: int):
        key = (mid, attn, prompt)
        if key not in cache:
            cache[key] = simulate(load(mid)["config"], batch=1, prompt_tokens=prompt, new_tokens=16,
                                  attn_implementation=attn)
        return cache[key]

    return run
