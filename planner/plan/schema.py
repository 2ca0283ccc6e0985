"""The Plan's JSON Schema, generated from the dataclasses of :mod:`vplan.planner.plan.contract`.

The generated schema is shipped as ``schema.json`` (package data; documented in docs/plan.md) and read back by
the validator. ``scripts/plan_schema.py`` rewrites it; a test keeps the shipped file identical to what the
dataclasses say, so the two can never drift.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import cache

from vplan.planner.plan import contract

SCHEMA_ID = "urn:vplan:plan-schema:%d" % contract.PLAN_SCHEMA_VERSION
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "pattern")


@cache
def hints(cls) -> dict:
    return typing.get_type_hints(cls, vars(contract))


def _is_optional(tp) -> tuple[bool, object]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return True, rest[0]
    return False, tp


def _type_schema(tp, defs: dict) -> dict:
    opt, tp = _is_optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        _define(tp, defs)
        out: dict = {"$ref": f"#/$defs/{tp.__name__}"}
    elif tp is bool:
        out = {"type": "boolean"}
    elif tp is int:
        out = {"type": "integer"}
    elif tp is float:
        out = {"type": "number"}
    elif tp is str:
        out = {"type": "string"}
    elif tp is dict:
        out = {"type": "object"}
    elif origin is dict:
        out = {"type": "object", "additionalProperties": _type_schema(args[1], defs)}
    elif origin is tuple:
        out = {"type": "array", "items": _type_schema(args[0], defs)}
    else:  # pragma: no cover - a contract field of a type the generator does not know is a bug
        raise TypeError(f"no JSON Schema for {tp!r}")
    if opt:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _define(cls, defs: dict) -> None:
    if cls.__name__ in defs:
        return
    defs[cls.__name__] = {}  # placeholder: breaks recursion
    props, required = {}, []
    for f in dataclasses.fields(cls):
        s = _type_schema(hints(cls)[f.name], defs)
        md = f.metadata
        if "enum" in md:
            s = {"enum": list(md["enum"])}
        for k in _BOUNDS:
            if k in md:
                target = s["anyOf"][0] if "anyOf" in s else s
                target[k] = md[k]
        if md.get("doc"):
            s = {"description": md["doc"], **s}
        props[f.name] = s
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    body = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        body = {"description": " ".join(cls.__doc__.split()), **body}
    defs[cls.__name__] = body


def build_schema() -> dict:
    defs: dict = {}
    _define(contract.Plan, defs)
    plan = defs.pop("Plan")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            "title": f"vplan plan file, schema version {contract.PLAN_SCHEMA_VERSION}", **plan,
            "$defs": dict(sorted(defs.items()))}


def render_schema() -> str:
    return json.dumps(build_schema(), indent=2) + "\n"


def _type_text(prop: dict) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return "one of " + ", ".join("null" if v is None else f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        return " or ".join(_type_text(p) for p in prop["anyOf"])
    t = prop.get("type", "any")
    if t == "array":
        return f"list of {_type_text(prop.get('items', {}))}"
    if t == "object" and isinstance(prop.get("additionalProperties"), dict):
        return f"map of {_type_text(prop['additionalProperties'])}"
    bounds = [f"{k} {prop[k]}" for k in ("minimum", "exclusiveMinimum", "maximum") if k in prop]
    return t + (f" ({', '.join(bounds)})" if bounds else "")


def render_markdown() -> str:
    """docs/plan.md: every record of the schema as a table (generated; a test keeps it in sync)."""
    schema = build_schema()
    out = ["# The plan file (schema version %d)" % contract.PLAN_SCHEMA_VERSION, "",
           "Generated from `planner/plan/contract.py` by `scripts/plan_schema.py`, like the JSON Schema shipped in the",
           "package (`vplan/planner/plan/schema.json`, validated on every read). Sizes are bytes, times seconds. An",
           "unknown key, a value of the wrong type or outside its range is an error that names the field; a plan of",
           "another schema version is refused with the command that re-creates it. Required fields are in bold.", ""]
    records = [("Plan", schema)] + list(schema["$defs"].items())
    for name, body in records:
        out += [f"## {name}", ""]
        if body.get("description") and name != "Plan":
            out += [body["description"], ""]
        out += ["| field | type | meaning |", "| --- | --- | --- |"]
        for field, prop in body["properties"].items():
            key = f"**{field}**" if field in body["required"] else field
            out.append(f"| {key} | {_type_text(prop)} | {prop.get('description', '')} |")
        out.append("")
    return "\n".join(out)
