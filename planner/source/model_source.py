"""Where a model's numbers came from: the one record every source (Hub, HF cache, catalog, local folder) returns."""
from __future__ import annotations

from dataclasses import dataclass

from vplan.planner.source.checkpoint import CheckpointSummary

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model", "spiece.model")


@dataclass(frozen=True)
class ModelSource:
    """Where a model's numbers came from. ``revision`` is the commit sha (None when no source could tell)."""

    model_id: str  # repo id, or the absolute folder path for a local model
    revision: str | None
    source: str  # "hub" | "cache" | "catalog" | "local"
    config: dict  # config.json content, verbatim
    checkpoint: CheckpointSummary | None
    notes: tuple[str, ...] = ()
    gated: bool | None = None
    tokenizer_files_present: bool | None = None
    provenance: str | None = None  # catalog entries: where the config came from

    def to_dict(self) -> dict:
        return {
            "model_id": self.model_id, "revision": self.revision, "source": self.source, "config": self.config,
            "checkpoint": self.checkpoint.to_dict() if self.checkpoint else None, "notes": list(self.notes),
            "gated": self.gated, "tokenizer_files_present": self.tokenizer_files_present,
            "provenance": self.provenance,
        }
