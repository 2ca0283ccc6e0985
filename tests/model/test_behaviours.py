"""The behaviour table (planner/model/behaviours.py) against the installed transformers: every entry that can be
read off the installed code is, so a release that changes one fails here instead of shifting numbers silently.
scripts/test.sh runs this under each modelled release (5.24 in the venv, 5.23 from its own folder)."""
import pytest

transformers = pytest.importorskip("transformers")

from vplan.planner.model.behaviours import BEHAVIOURS, MODELLED, behaviour, normalize_version  # noqa: E402

INSTALLED = transformers.__version__


def test_the_installed_transformers_is_a_modelled_release():
    assert normalize_version(INSTALLED) in MODELLED, (
        f"transformers {INSTALLED} is not modelled: read its changes, add them to planner/model/behaviours.py "
        "with their evidence, and pin it in scripts/constraints.txt")


def test_every_behaviour_has_a_value_for_every_modelled_release_and_evidence():
    for b in BEHAVIOURS.values():
        assert set(b.values) == set(MODELLED), b.id
        assert b.evidence and b.what


@pytest.mark.parametrize("module,cls", [("deepseek_v2", "DeepseekV2PreTrainedModel"),
                                        ("deepseek_v3", "DeepseekV3PreTrainedModel")])
def test_deepseek_router_fp32(module, cls):
    import importlib

    mod = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    strict = getattr(getattr(mod, cls), "_keep_in_fp32_modules_strict", None) or []
    assert ("gate.weight" in strict) == behaviour("deepseek_router_fp32", INSTALLED)
