"""Shared fixtures. ``offline_home``: offline (the catalog and folders only), caches in a fresh folder that is also
the working directory, an 80-column terminal (the fuzz tests and the CLI front-door tests)."""
import pytest


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("VPLAN_CACHE", str(tmp_path / "vc"))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("VPLAN_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
