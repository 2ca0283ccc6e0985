"""What may reach an sbatch script, and how: validation and shell quoting of every interpolated value.

Pure. Each value a script interpolates passes one of these checks (or ``shlex.quote``) before a template sees it;
the templates only place pre-quoted strings. Tokens never reach a script.
"""
from __future__ import annotations

import re

from vplan.planner.errors import UsageError

REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?\Z")
REVISION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}\Z")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # partitions, job names
CONSTRAINT_RE = re.compile(r"^[A-Za-z0-9_.&|,:*()\[\]-]{1,256}\Z")
LOGDIR_RE = re.compile(r"^[A-Za-z0-9._/+-]{1,1024}\Z")
GRES_TYPE_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
# A path that may use ${VAR}, $VAR and ${VAR:-default}: safe inside double quotes (no $( or backticks).
PATH_EXPR_RE = re.compile(r"^(?:[A-Za-z0-9._/+@%=~,-]|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[A-Za-z0-9._/+@,-]*)?\})+\Z")
TOKEN_RE = re.compile(r"(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|HUGGINGFACE_TOKEN)\s*=|\bhf_[A-Za-z0-9]{30,}")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}\Z")  # network interfaces: eth0, ib0, enp1s0f0, bond0.12


def check_text(value: str, what: str) -> str:
    if CONTROL_RE.search(value):
        raise UsageError(f"{what} {value!r} contains control characters (newline, tab, NUL, ...); remove them")
    return value


def validate_repo_id(model_id: str, source: str = "hub") -> str:
    """Hub ids `org/name`; a local plan's id is a path, checked for control characters only (it only
    reaches comments and, sanitised, the job name)."""
    if source == "local":
        return check_text(model_id, "model path")
    if not REPO_RE.match(model_id) or ".." in model_id:
        raise UsageError(f"model id {model_id!r} is not a Hub repo id (org/name with letters, digits, . _ -); re-create the plan")
    return model_id


def validate_name(value: str, what: str) -> str:
    if not NAME_RE.match(value):
        raise UsageError(f"{what} {value!r} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


def validate_abs_path(path: str, what: str) -> str:
    check_text(path, what)
    if not path.startswith("/"):
        raise UsageError(f"{what} {path!r} must be an absolute path (the job may start in another directory)")
    return path


def shell_path_expr(value: str, what: str) -> str:
    """A path that may expand ``$VAR``/``${VAR:-default}`` on the node, double-quoted; nothing else expands."""
    if not PATH_EXPR_RE.match(value):
        raise UsageError(
            f"{what} {value!r} is not a plain path: use letters, digits, / . _ - + and $VAR or ${{VAR:-default}} only"
        )
    return f'"{value}"'


def no_token(text: str, what: str) -> str:
    if TOKEN_RE.search(text):
        raise UsageError(f"{what} contains a Hugging Face token; never put tokens in job scripts: run `hf auth login` on the cluster instead")
    return text


def sanitise_job_name(model_id: str) -> str:
    """``meta-llama/Llama-3.1-8B`` -> ``vplan-Llama-3.1-8B`` (SLURM job names: letters, digits, . _ -)."""
    base = model_id.rstrip("/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "model"
    return f"vplan-{base}"[:64]
