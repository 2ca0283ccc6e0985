"""Model ids vplan can see without the Hub (the bundled catalog, the HF cache) and "did you mean" for a mistyped one."""
from __future__ import annotations

import re
from difflib import SequenceMatcher

from vplan.planner.source import catalog
from vplan.planner.source.hf_cache import hub_cache_dir

_WORD = re.compile(r"[a-z0-9]+")


def known_ids(cache_dir=None) -> list[str]:
    """The catalog's ids and the models in the HF cache (``models--org--name`` folders)."""
    ids = set(catalog.list_ids())
    try:
        for p in hub_cache_dir(cache_dir).glob("models--*"):
            ids.add(p.name[len("models--"):].replace("--", "/", 1))
    except OSError:  # an unreadable cache folder only costs the suggestions
        pass
    return sorted(ids)


def _score(ref: str, cand: str) -> float:
    r, c = ref.lower(), cand.lower()
    name = c.rsplit("/", 1)[-1]
    ratio = max(SequenceMatcher(None, r, c).ratio(), SequenceMatcher(None, r.rsplit("/", 1)[-1], name).ratio())
    words = set(_WORD.findall(r))
    covered = bool(words) and words <= set(_WORD.findall(c))
    return ratio + (0.5 if covered else 0.0)


def similar_ids(ref: str, candidates, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` candidates that look like ``ref``, best first (all of ref's words present counts most)."""
    scored = sorted(((_score(ref, c), c) for c in candidates if c.lower() != ref.lower()), key=lambda x: (-x[0], x[1]))
    if scored and scored[0][0] >= 1.0:  # some hold every word of ref: only those
        cutoff = 1.0
    return [c for s, c in scored if s >= cutoff][:n]


def did_you_mean(ref: str, cache_dir=None) -> str:
    """``"; did you mean A, B? (`vplan models` lists the catalog)"`` or ``""``."""
    near = similar_ids(ref, known_ids(cache_dir))
    if not near:
        return "; `vplan models` lists the bundled catalog"
    return f"; did you mean {', '.join(near)}? (`vplan models` lists the bundled catalog)"
