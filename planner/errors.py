"""Errors a user can cause, each one line with the next step.

The CLI maps every :class:`VplanError` to its message and ``exit_code``; nothing else reaches the
user as a traceback unless ``VPLAN_DEBUG=1``. Keep messages to one line that says what to do next.
"""
from __future__ import annotations


class VplanError(Exception):
    """Base class: ``message`` is shown as is; ``exit_code`` is the process status."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UsageError(VplanError):
    """A flag, file or value the user gave is invalid."""


class ClusterError(VplanError):
    """The cluster profile is malformed or cannot hold what was asked."""


class PlanFileError(VplanError):
    """A plan file is missing, malformed or of an unsupported schema version."""


class UnsupportedModelError(VplanError):
    """Neither the config nor the checkpoint metadata let vplan size the model."""


class ModelSourceError(VplanError):
    """Base for errors while locating a model (Hub, cache, catalog, local folder)."""


class ModelNotFoundError(ModelSourceError):
    pass


class GatedModelError(ModelSourceError):
    pass


class NoConfigError(ModelSourceError):
    pass


class MalformedConfigError(ModelSourceError):
    pass


class OfflineNoCacheError(ModelSourceError):
    pass


class HubUnreachableError(ModelSourceError):
    pass


class NoFittingPlanError(VplanError):
    """Raised where a command needs a runnable plan and none exists (e.g. render-sbatch)."""

    exit_code = 3


class SimulationUnsupportedError(VplanError):
    """The simulator cannot represent the requested precision or architecture."""


class PreflightError(VplanError):
    """The node differs from the plan (GPUs, memory, RAM limit, disk, files, packages): nothing was loaded."""

    exit_code = 4


class RunError(VplanError):
    """Loading or generating failed after preflight passed (OOM, load failure); partial output is kept."""

    exit_code = 5
