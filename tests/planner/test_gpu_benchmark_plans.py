"""benchmarks/gpu_runtime.py runs vplan's own plans on a GPU; its planning half runs here (no GPU): every case gets a
plan that fits one H100 80 GB in the asked precision, from the cut config alone."""
import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("gpu_runtime", Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_runtime.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


@pytest.mark.parametrize("case", bench.CASES)
def test_every_case_is_planned_on_one_h100(case, tmp_path):
    model, precision = case.split(":")
    cfg, info = bench.cut_config(model, 40.0)
    assert 1 <= info["layers"] <= info["layers_full"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    plan = bench.plan_case(tmp_path, precision, bench.catalog_gpu("NVIDIA H100 80GB HBM3"))
    assert (plan.status, plan.precision, plan.gpus, plan.gpu_type) == ("fits", precision, 1, "H100-80GB")
    assert plan.gpu_devices[0].weights_bytes <= 40 * 1024**3  # the cut keeps the bf16 checkpoint under 40 GiB
