"""Plan files: JSON in, validated against the shipped schema, typed records out; typed records in, JSON out.

Reading is strict: the file must match ``schema.json`` (an unknown key, a float where bytes are promised, a
negative size or an unknown status is an error naming the field), and an older schema version gets a one-line
error that says to re-create the plan. Writing is atomic and stamps the vplan version and the time.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import typing
from functools import cache
from importlib import resources
from pathlib import Path

from vplan.planner.errors import PlanFileError
from vplan.planner.files import read_user_file, write_atomic
from vplan.planner.plan.contract import PLAN_SCHEMA_VERSION, Plan, PlanInvariantError
from vplan.planner.plan.schema import _is_optional, hints
from vplan.planner.plan.validate import SchemaViolation, validate
from vplan.planner.version import vplan_version


@cache
def shipped_schema() -> dict:
    return json.loads(resources.files("vplan.planner.plan").joinpath("schema.json").read_text())


# ------------------------------------------------------------------------------------------------ encode
def to_jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def plan_to_dict(plan: Plan) -> dict:
    """The plan as written to a file: schema fields only, config last (it is long)."""
    d = to_jsonable(plan)
    head = {k: d.pop(k) for k in ("schema_version", "vplan_version", "created_at", "model_id", "revision")}
    config = d.pop("config")
    return {**head, **d, "config": config}


# ------------------------------------------------------------------------------------------------ decode
def _decode(value, tp):
    opt, tp = _is_optional(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        h = hints(tp)
        return tp(**{k: _decode(v, h[k]) for k, v in value.items()})
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        return tuple(_decode(v, args[0]) for v in value)
    if origin is dict:
        return {k: _decode(v, args[1]) for k, v in value.items()}
    if tp is float and isinstance(value, int):
        return float(value)
    return value


def plan_from_dict(data, *, origin: str = "plan") -> Plan:
    """Validate ``data`` against the plan schema and build the typed Plan; PlanFileError names the field."""
    if not isinstance(data, dict):
        raise PlanFileError(f"{origin} is not a JSON object; re-create it with `vplan plan`")
    version = data.get("schema_version")
    if version != PLAN_SCHEMA_VERSION:
        raise PlanFileError(f"{origin} has plan schema version {version!r}; this vplan reads version "
                            f"{PLAN_SCHEMA_VERSION}: re-create it with `vplan plan MODEL -o FILE`")
    try:
        validate(data, shipped_schema())
    except SchemaViolation as e:
        raise PlanFileError(f"{origin}: field {e.path or '(top level)'}: {e.message}; re-create the plan with "
                            "`vplan plan` (plan files are not meant to be edited by hand)") from None
    try:
        return _decode(data, Plan)
    except PlanInvariantError as e:
        raise PlanFileError(f"{origin}: {e}; re-create the plan with `vplan plan` (plan files are not meant to be "
                            "edited by hand)") from None


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def read_plan(path: str | Path) -> Plan:
    p = Path(path)
    text = read_user_file(p, "plan file", PlanFileError, f"create one with `vplan plan MODEL -o {p}`")
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as e:
        raise PlanFileError(f"plan file {str(p)!r} is not valid JSON ({str(e).splitlines()[0][:120]}); "
                            "re-create it with `vplan plan`") from None
    return plan_from_dict(data, origin=f"plan file {str(p)!r}")


def stamp(plan: Plan, now: _dt.datetime | None = None) -> Plan:
    """The plan as written: this vplan's version and the UTC time (``now`` for tests)."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return dataclasses.replace(plan, vplan_version=vplan_version(),
                               created_at=now.astimezone(_dt.timezone.utc).replace(microsecond=0).isoformat())


def plan_json(plan: Plan) -> str:
    return json.dumps(plan_to_dict(plan), indent=2, allow_nan=False) + "\n"


def write_plan(plan: Plan, path: str | Path, *, force: bool = True, now: _dt.datetime | None = None) -> Path:
    """Stamp and write atomically (temp file + rename): a crash never leaves half a plan."""
    return write_atomic(plan_json(stamp(plan, now)), path, force=force)
