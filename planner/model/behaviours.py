"""What transformers does that the memory model depends on, by version, each entry with its evidence.

A plan is computed for one transformers version (``--transformers``, default the newest modelled): the model
reads every version-dependent fact through :func:`behaviour`, plans record the modelled range in
``requirements``, and preflight refuses a node whose transformers is outside it. A version that is not in
``MODELLED`` is refused with the list of those that are: a new release must be read and added here (with its
evidence) before vplan plans for it, and CI's truth tests run against every modelled version pip can install.
"""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.errors import UsageError

MODELLED = ("5.23", "5.24")  # major.minor; every patch release of a modelled minor behaves the same
DEFAULT_TRANSFORMERS = MODELLED[-1]


@dataclass(frozen=True)
class Behaviour:
    id: str
    what: str
    values: dict[str, object]  # modelled minor version -> value
    evidence: str  # file, symbol and the code line(s) that decide it


BEHAVIOURS: dict[str, Behaviour] = {b.id: b for b in (
    Behaviour(
        "deepseek_router_fp32",
        "DeepSeek-V2/V3 keep the MoE router weight (mlp.gate.weight, experts x hidden) in fp32 whatever dtype is asked",
        {"5.23": False, "5.24": True},
        "models/deepseek_v2/modeling_deepseek_v2.py and models/deepseek_v3/modeling_deepseek_v3.py, "
        "PreTrainedModel subclass: 5.24 adds `_keep_in_fp32_modules_strict = [\"gate.weight\"]` (V3 also "
        "\"e_score_correction_bias\"); 5.23 has only V3's e_score_correction_bias",
    ),
)}


def normalize_version(version: str) -> str:
    """'5.24.0' / '5.24' / '5.24.0.dev0' -> '5.24'; refuses versions the model was not read for."""
    parts = str(version).strip().split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise UsageError(f"--transformers {version!r} is not a version like 5.24 or 5.24.0")
    minor = f"{int(parts[0])}.{int(parts[1])}"
    if minor not in MODELLED:
        raise UsageError(f"transformers {version} is not modelled by this vplan (modelled: {', '.join(MODELLED)}); "
                         f"plan with --transformers {DEFAULT_TRANSFORMERS} and install that version on the nodes, or "
                         "upgrade vplan")
    return minor


def behaviour(key: str, version: str):
    return BEHAVIOURS[key].values[normalize_version(version)]


def requirement_spec(version: str) -> str:
    """The version specifier plans record for transformers: the modelled minor release."""
    minor = normalize_version(version)
    major, m = minor.split(".")
    return f">={minor},<{major}.{int(m) + 1}"
