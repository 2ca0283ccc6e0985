"""The CUDA caching allocator's setting, in one place: expandable segments, in force before CUDA initialises.

torch 2.13 reads ``PYTORCH_ALLOC_CONF`` first (c10/core/AllocatorConfig.h; ``PYTORCH_CUDA_ALLOC_CONF`` is the
lower-priority legacy name, which older torch releases read alone), once, when the allocator first initialises.
So before anything touches CUDA, :func:`ensure_expandable_segments` writes the user's settings plus
``expandable_segments:True`` into both names; if CUDA is already initialised (the Python API called after the
user's own code used the GPU) it applies the setting through torch's allocator-settings call instead.
:func:`allocator_report` says, after initialisation, which setting is active.
"""
from __future__ import annotations

import os
import sys
from typing import MutableMapping

from vplan.planner.plan.contract import ALLOC_CONF

VARS = ("PYTORCH_ALLOC_CONF", "PYTORCH_CUDA_ALLOC_CONF")
_KEY = ALLOC_CONF.split(":", 1)[0]


def _items(text: str) -> list[tuple[str, str]]:
    out = []
    for part in (text or "").split(","):
        if ":" in part:
            k, v = part.split(":", 1)
            out.append((k.strip(), v.strip()))
    return out


def merged_setting(env: MutableMapping[str, str] | None = None) -> str:
    """The user's allocator settings (from the variable torch reads first) with expandable segments on, unless
    the user turned them off explicitly (then kept as given, and reported)."""
    env = os.environ if env is None else env
    current = next((env[v] for v in VARS if env.get(v)), "")
    items = _items(current)
    if not any(k == _KEY for k, _ in items):
        items.append((_KEY, ALLOC_CONF.split(":", 1)[1]))
    return ",".join(f"{k}:{v}" for k, v in items)


def ensure_expandable_segments(env: MutableMapping[str, str] | None = None) -> str:
    """Set the allocator configuration for the process; returns the setting written."""
    env = os.environ if env is None else env
    value = merged_setting(env)
    for var in VARS:
        env[var] = value
    torch = sys.modules.get("torch")
    if env is os.environ and torch is not None and _cuda_initialized(torch):
        try:
            torch._C._accelerator_setAllocatorSettings(value)
        except (AttributeError, RuntimeError):  # older torch: the env var was all there was
            pass
    return value


def _cuda_initialized(torch) -> bool:
    try:
        return bool(torch.cuda.is_initialized())
    except Exception:  # noqa: BLE001 - CPU builds without CUDA hooks
        return False


def allocator_report() -> dict:
    """What the allocator runs with: the settings torch parsed (after CUDA initialised) and whether expandable
    segments are on. ``active`` is None where torch has no CUDA (nothing to verify)."""
    torch = sys.modules.get("torch")
    settings = None
    if torch is not None:
        try:
            settings = torch._C._accelerator_getAllocatorSettings()
        except (AttributeError, RuntimeError):
            settings = None
    requested = next((os.environ[v] for v in VARS if os.environ.get(v)), "")
    source = settings if settings else requested
    on = dict(_items(source)).get(_KEY, "").lower() == "true"
    cuda = torch is not None and _cuda_initialized(torch)
    return {"requested": requested, "torch_settings": settings, "expandable_segments": on,
            "active": on if cuda else None}
