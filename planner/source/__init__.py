"""Model sources: the Hub, the HF cache, vplan's bundled catalog and local folders (the planner's only I/O)."""
from vplan.planner.source.model_source import ModelSource
from vplan.planner.source.resolve import resolve_model

__all__ = ["ModelSource", "resolve_model"]
