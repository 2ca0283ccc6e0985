"""vplan's version, stamped once: from the installed package's metadata (setup.cfg is the only place it is set)."""
from __future__ import annotations

from importlib import metadata


def vplan_version() -> str:
    try:
        return metadata.version("vplan")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
