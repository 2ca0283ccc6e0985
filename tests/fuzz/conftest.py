"""Every fuzz test runs offline (the catalog and folders only), in its own HOME for caches, at 80 columns."""
import pytest


@pytest.fixture(autouse=True)
def offline_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("VPLAN_CACHE", str(tmp_path / "vc"))
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("VPLAN_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path
