"""The click commands: files written atomically, refusals, the `--` command, detect from files."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from vplan.planner.plan import write_plan

from .conftest import FIXTURES, make_plan


def _main(args, env=None):
    """The installed entry point, as a user runs it (cli.py registers render-sbatch and cluster)."""
    return subprocess.run([sys.executable, "-m", "vplan.planner.cli", *args], capture_output=True, text=True, env=env)


def test_render_writes_atomically_755_and_refuses_overwrite(tmp_path):
    plan = write_plan(make_plan(), tmp_path / "p.json")
    out = tmp_path / "slurm" / "job.sh"
    env = dict(os.environ, HF_TOKEN="hf_secretsecretsecretsecretsecret1234")
    r = _main(["render-sbatch", str(plan), "-o", str(out), "--", "python", "gen.py", "$(id)"], env=env)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert f"export VPLAN_PLAN={plan}" in text and "python gen.py '$(id)'" in text and "hf_secret" not in text
    assert [p.name for p in out.parent.iterdir()] == ["job.sh"]  # no temp file left
    r = _main(["render-sbatch", str(plan), "-o", str(out), "--prompt", "hi"])
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == f"vplan: error: {out} exists; pass --force to overwrite it"
    assert _main(["render-sbatch", str(plan), "-o", str(out), "--force", "--prompt", "hi"]).returncode == 0
    assert """vplan run "$VPLAN_PLAN" --prompt hi""" in out.read_text()


def test_render_does_not_fit_exit_3_and_stdout(tmp_path):
    plan = write_plan(make_plan(status="does-not-fit", reason="needs 3 GPUs"), tmp_path / "p.json")
    r = _main(["render-sbatch", str(plan)])
    assert r.returncode == 3 and "does not fit: needs 3 GPUs" in r.stderr and r.stdout == ""
    ok = write_plan(make_plan(), tmp_path / "ok.json")
    r = _main(["render-sbatch", str(ok), "--prompt", "hi"])
    assert r.returncode == 0 and r.stdout.startswith("#!/bin/bash\n")


def test_render_array_splits_files(tmp_path):
    a = write_plan(make_plan("a/one"), tmp_path / "a.json")
    b = write_plan(make_plan("a/two", gpus=2), tmp_path / "b.json")
    r = _main(["render-sbatch", str(a), str(b)])
    assert r.returncode == 2 and "--array" in r.stderr
    r = _main(["render-sbatch", str(a), str(b), "--array", "-o", str(tmp_path / "exp.sh"), "--prompt", "hi"])
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.glob("exp*.sh")) == ["exp-gpu-1gpu.sh", "exp-gpu-2gpu.sh"]


def test_detect_from_files(tmp_path):
    r = _main(["cluster", "detect", "--scontrol-file", str(FIXTURES / "typed_scontrol.txt"),
               "--sinfo-file", str(FIXTURES / "typed_sinfo.txt"), "-o", str(tmp_path / "c.toml")])
    assert r.returncode == 0, r.stderr
    assert 'gpu = "L40S"' in (tmp_path / "c.toml").read_text()
    r = _main(["cluster", "detect", "--scontrol-file", str(FIXTURES / "typed_sinfo.txt"), "--sinfo-file", str(FIXTURES / "typed_sinfo.txt")])
    assert r.returncode == 2 and "no `NodeName=` lines" in r.stderr
