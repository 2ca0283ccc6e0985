"""Issue 12, second list: what a new user meets. The table fits 80 columns, assumptions and source notes are said
once, the next commands are named, unknown ids get suggestions, alternatives are complete with --all and unique in
the JSON, suggestions include the cheapest setups, and the runtime's absence ends in the install line."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.harness import assert_text_fits, run_cli
from vplan.planner.source import catalog

REPO = Path(__file__).resolve().parents[2]
SIX = ["openai/gpt-oss-20b", "deepseek-ai/DeepSeek-V2.5", "meta-llama/Llama-3.3-70B-Instruct", "Qwen/Qwen2.5-72B-Instruct",
       "Qwen/Qwen3-32B", "deepseek-ai/deepseek-llm-7b-chat"]


pytestmark = pytest.mark.usefixtures("offline_home")


def ok(argv) -> str:
    code, out, err = run_cli(argv)
    assert code == 0, err
    return out


def test_six_model_table_fits_80_columns_in_one_unit():
    out = ok(["check", *SIX])
    assert_text_fits(out, 80)
    table = out.split("\n\n", 1)[0].splitlines()
    head = next(i for i, line in enumerate(table) if line.startswith("model "))
    rows = table[head + 2:]
    assert [r.split()[0] for r in rows] == ["gpt-oss-20b", "DeepSeek-V2.5", "Llama-3.3-70B-Instruct",
                                            "Qwen2.5-72B-Instruct", "Qwen3-32B", "deepseek-llm-7b-chat"]
    assert "GiB" in table[head] and not re.search(r"\bGB\b", "\n".join(table[head:]))  # one memory unit: GiB
    assert [r.split()[1] for r in rows] == ["fits", "does-not-fit", "fits", "fits", "fits", "fits"]
    assert "openai/gpt-oss-20b (gpt_oss, from catalog" in out  # the details carry what the columns left out
    assert "20.9B (4.2B active) parameters; checkpoint 12.8 GiB mxfp4" in out


def test_wide_terminals_get_more_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    head = next(line for line in ok(["check", "Qwen/Qwen3-32B"]).splitlines() if line.startswith("model "))
    assert all(c in head for c in ("load", "params", "ckpt GiB", "KV KiB/tok", "KV GiB", "cpu/disk GiB"))


def flat(text: str) -> str:
    """Output with its line wrapping undone (continuation lines are indented)."""
    return " ".join(text.replace(" \\\n", " ").split())


def test_assumptions_and_notes_are_said_once():
    out = flat(ok(["check", "Qwen/Qwen3-32B", "Qwen/Qwen3-8B"]))
    assert out.count("offline mode (HF_HUB_OFFLINE=1 or --offline): using vplan's bundled catalog snapshot") == 1
    assert "assumed: default nodes: 2 x A100-40GB" in out
    out = flat(ok(["check", "Qwen/Qwen3-32B", "--gpu", "H100", "--gpus-per-node", "4"]))
    assert "assumed: host RAM 680 GB per node (2x its GPU memory; give --node-mem)" in out
    assert "assumed: 32 CPUs per node (give --cpus-per-node)" in out
    given = flat(ok(["check", "Qwen/Qwen3-8B", "--gpu", "H100", "--node-mem", "256GB", "--cpus-per-node", "16"]))
    assert "assumed: host RAM" not in given and "CPUs per node (give" not in given  # given: not assumed


def test_next_steps_name_the_commands():
    out = flat(ok(["check", "Qwen/Qwen3-32B", "--context", "8192"]))
    assert "vplan plan Qwen/Qwen3-32B --context 8192 -o qwen3-32b.json" in out
    assert "vplan render-sbatch qwen3-32b.json -o job.sh --input in.jsonl --output out.jsonl" in out
    assert "sbatch job.sh" in out
    assert "nothing runs on these nodes" in ok(["check", "deepseek-ai/DeepSeek-V2.5"])
    out = ok(["check", "jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment", "--context", "8192", "--batch", "2"])
    assert_text_fits(out)
    steps = out.split("next steps", 1)[1].splitlines()
    steps = steps[next(i for i, x in enumerate(steps) if x.strip().startswith("vplan plan")):]
    cmd = " ".join(x.strip().rstrip("\\").strip() for x in steps[: next(i for i, x in enumerate(steps)
                                                                         if not x.endswith("\\")) + 1])
    assert shlex.split(cmd) == ["vplan", "plan", "jeevanchaps/Meta-Llama3.1-8B-Instruct-assessment", "--context", "8192",
                                "--batch", "2", "-o", "meta-llama3.1-8b-instruct-assessment.json"]


def test_unknown_ids_get_suggestions():
    code, out, err = run_cli(["check", "llama-70b"])
    assert code == 2 and "did you mean meta-llama/Llama-3.1-70B-Instruct, meta-llama/Llama-3.3-70B-Instruct?" in err
    code, out, err = run_cli(["check", "Qwen3-32b"])
    assert code == 2 and "did you mean Qwen/Qwen3-32B" in err


def test_models_lists_the_catalog():
    rows = json.loads(ok(["models", "--json"]))
    assert [r["model_id"] for r in rows] == catalog.list_ids()
    text = ok(["models"])
    assert_text_fits(text)
    assert all(m.split("/")[-1] in text for m in catalog.list_ids())


def test_alternatives_complete_with_all_and_unique_in_json():
    short = ok(["check", "deepseek-ai/DeepSeek-V2.5"])
    m = re.search(r"alternatives \((\d+) of (\d+); --all lists every one\)", short)
    assert m and int(m.group(1)) < int(m.group(2))
    every = ok(["check", "deepseek-ai/DeepSeek-V2.5", "--all"])
    assert "alternatives:" in every
    assert every.count("    - ") == int(m.group(2))
    d = json.loads(ok(["check", "deepseek-ai/DeepSeek-V2.5", "openai/gpt-oss-20b", "--json"]))
    for model in d["models"]:
        keys = [(a["precision"], a["gpus"], a["status"], a["rejection"]) for a in model["alternatives"]]
        assert len(keys) == len(set(keys)), model["model"]
        assert len(model["alternatives"]) == int(m.group(2)) or model["model"] != "deepseek-ai/DeepSeek-V2.5"


def test_suggestions_include_the_cheapest_setups():
    d = json.loads(ok(["check", "deepseek-ai/DeepSeek-V2.5", "--json"]))
    s = d["models"][0]["suggestions"]
    assert s[0].startswith("3 x H100-80GB/H100-PCIe in fp8") and "bf16 on 6" in s[0]
    assert any(x.startswith("2 x H200 in fp8") for x in s)


def test_long_context_does_not_contradict_itself():
    out = ok(["check", "Qwen/Qwen3-32B", "--context", "131072"])
    details = flat(out.split("Qwen/Qwen3-32B (qwen3", 1)[1])
    assert "why not: bf16 needs" in details and "GiB on GPUs" in details
    assert "disk offload not allowed" not in out and not re.search(r"GPU \d+: [\d.]+ of", details)
    row = next(line for line in out.splitlines() if line.split()[:1] in (["Qwen3-32B"], ["Qwen/Qwen3-32B"]))
    assert row.split()[1:4] == ["does-not-fit", "2", "x"] and "-" in row


def test_render_sbatch_names_its_payload(tmp_path):
    ok(["plan", "Qwen/Qwen3-8B", "-o", "p.json"])
    code, out, err = run_cli(["render-sbatch", "p.json"])
    assert code == 2 and "the job needs work to do: --input prompts.jsonl --output out.jsonl, --prompt TEXT" in err
    code, out, err = run_cli(["render-sbatch", "p.json", "--input", "in.jsonl", "--output", "out.jsonl"])
    assert code == 0 and out.rstrip().endswith(f"--input {tmp_path}/in.jsonl --output {tmp_path}/out.jsonl")
    assert "the job runs: vplan run PLAN --input" in err and "does not exist here yet" in err


def test_docs_first_slurm_example_makes_a_job_that_runs(tmp_path):
    """The first command block of docs/slurm.md, run as written (sbatch aside): the script it renders runs a payload."""
    block = re.search(r"```bash\n(.*?)```", (REPO / "docs" / "slurm.md").read_text(), re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    vplan = [shlex.split(x)[1:] for x in lines if x.startswith("vplan ")]
    assert vplan[0][0] == "plan" and vplan[1][0] == "render-sbatch"
    for argv in vplan[:2]:
        ok(argv)
    script = Path(vplan[1][vplan[1].index("-o") + 1]).read_text()
    last = script.rstrip().splitlines()[-1]
    assert last.startswith('vplan run "$VPLAN_PLAN" --input ') or last.startswith('vplan run "$VPLAN_PLAN" --prompt ')


def test_readme_front_door():
    readme = (REPO / "README.md").read_text()
    assert "pip install 'vplan[runtime]'" in readme and "vplan models" in readme and "--all" in readme
    quick = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    assert "vplan check " in quick


WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"


@pytest.mark.parametrize("code", [
    "from vplan.planner.cli.main import main; main(['simulate', sys.argv[1]])",
    "from vplan.planner.cli.main import main; main(['run', sys.argv[1], '--prompt', 'hi', '--skip-preflight'])",
])
def test_runtime_commands_without_torch_end_in_the_install_line(tmp_path, code):
    ok(["plan", "Qwen/Qwen3-8B", "-o", "p.json"])
    r = subprocess.run([sys.executable, "-c", WITHOUT_TORCH + code, str(tmp_path / "p.json")], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("vplan: error: this command needs torch")
    assert "pip install 'vplan[runtime]'" in r.stderr


def test_api_without_torch_says_how_to_install(tmp_path):
    ok(["plan", "Qwen/Qwen3-8B", "-o", "p.json"])
    code = ("from vplan.runtime import load_planned\ntry:\n    load_planned(sys.argv[1])\n"
            "except ModuleNotFoundError as e:\n    print(e.name, '|', e)\n")
    r = subprocess.run([sys.executable, "-c", WITHOUT_TORCH + code, str(tmp_path / "p.json")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("torch | vplan.runtime.load_planned needs torch") and "vplan[runtime]" in r.stdout


def test_readme_tables_are_what_vplan_prints():
    """The README's two six-model tables are the tool's output, not a transcription that drifts: the 80-column
    check table line for line, and the engine comparison's precisions and GPU-hours per model and in total."""
    readme = (REPO / "README.md").read_text()
    out = run_cli(["check", *SIX])[1]
    table = out.split("\n\n", 1)[0].splitlines()
    head = next(i for i, line in enumerate(table) if line.startswith("model "))
    assert "\n".join(x.rstrip() for x in table[head:]) in readme

    d = json.loads(ok(["check", *SIX, "--engine", "all", "--requests", "5000", "--prompt-tokens", "3000",
                       "--max-new-tokens", "500", "--json"]))
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]]
            for r in re.findall(r"^\|[^\n]*\|$", readme.split("### Which engine", 1)[1].split("## ", 1)[0], re.M)}
    plans = {(m["model"], m["plan"]["engine"]): m["plan"] for m in d["models"]}
    for mid in SIX:
        row = rows[mid.split("/")[1]]
        for engine, (setup, hours) in (("transformers", (row[0], row[2])), ("vllm", (row[3], row[5]))):
            p = plans[(mid, engine)]
            if p["status"] == "does-not-fit":
                assert hours == "-", (mid, engine)
                continue
            assert setup.startswith(p["precision"]), (mid, engine, setup)
            assert float(hours) == pytest.approx(p["gpu_hours"], abs=0.05), (mid, engine)
    total = rows["**experiment**"]
    assert float(total[2].strip("*")) == pytest.approx(d["experiment"]["transformers"]["gpu_hours"], abs=0.05)
    assert float(total[5].strip("*")) == pytest.approx(d["experiment"]["vllm"]["gpu_hours"], abs=0.05)


@pytest.mark.parametrize("engine", ["transformers", "vllm", "all"])
def test_the_next_steps_check_prints_run_as_written(tmp_path, engine):
    """The commands after "next steps" are typed as printed (continuation lines joined) and succeed; with
    --engine all the plan command names the engine whose job is faster (a plan file is for one engine)."""
    out = ok(["check", "Qwen/Qwen3-32B", "--engine", engine, "--requests", "50"])
    text = out.split("next steps", 1)[1].split(":", 1)[1].replace(" \\\n", " ")
    cmds = [shlex.split(line)[1:] for line in text.splitlines() if line.strip().startswith("vplan ")]
    assert [c[0] for c in cmds] == ["plan", "render-sbatch"]
    if engine == "all":
        assert cmds[0][cmds[0].index("--engine") + 1] == "vllm"
    for argv in cmds:
        ok(argv)
    assert json.loads((tmp_path / "qwen3-32b.json").read_text())["engine"] == ("vllm" if engine == "all" else engine)
