"""A small JSON Schema validator for the subset the plan schema uses (draft 2020-12 keywords: type, enum,
properties, required, additionalProperties, items, anyOf, $ref into $defs, minimum, maximum,
exclusiveMinimum, pattern). Stricter than the standard in one place, on purpose: ``integer`` means a JSON
integer literal (``1.0`` is refused: a plan promises integer bytes) and booleans are never numbers.

Errors name the field by its path (``devices[0].weights_bytes``), the value and what is allowed; the first
violation is reported (one line for the user).
"""
from __future__ import annotations

import math
import re

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "null": lambda v: v is None,
}


class SchemaViolation(ValueError):
    def __init__(self, path: str, message: str):
        super().__init__(f"{path or 'the file'}: {message}")
        self.path = path
        self.message = message


def _show(v) -> str:
    s = repr(v) if not isinstance(v, (dict, list)) else type(v).__name__
    return s if len(s) <= 60 else s[:57] + "..."


def _join(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def validate(value, schema: dict, root: dict | None = None, path: str = "") -> None:
    """Raise :class:`SchemaViolation` at the first place ``value`` breaks ``schema``."""
    root = schema if root is None else root
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return validate(value, root["$defs"][name], root, path)
    if "anyOf" in schema:
        errors = []
        for sub in schema["anyOf"]:
            try:
                return validate(value, sub, root, path)
            except SchemaViolation as e:
                errors.append(e)
        raise max(errors, key=lambda e: len(e.path))  # the deepest explanation is the useful one
    if "enum" in schema:
        if not any(value == e and type(value) is type(e) for e in schema["enum"]):
            allowed = ", ".join("null" if e is None else str(e) for e in schema["enum"])
            raise SchemaViolation(path, f"{_show(value)} is not one of: {allowed}")
        return None
    t = schema.get("type")
    if t is not None and not _TYPES[t](value):
        if t == "number" and isinstance(value, float):
            raise SchemaViolation(path, f"{value!r} is not a finite number")
        raise SchemaViolation(path, f"{_show(value)} is not {'an' if t[0] in 'aeio' else 'a'} {t}")
    if t in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaViolation(path, f"{value!r} is below the minimum {schema['minimum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise SchemaViolation(path, f"{value!r} must be greater than {schema['exclusiveMinimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaViolation(path, f"{value!r} is above the maximum {schema['maximum']}")
    if t == "string" and "pattern" in schema and not re.search(schema["pattern"], value):
        raise SchemaViolation(path, f"{_show(value)} does not match {schema['pattern']}")
    if t == "array":
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), root, _join(path, i))
    if t == "object":
        props = schema.get("properties", {})
        for key in schema.get("required", ()):
            if key not in value:
                raise SchemaViolation(path, f"the key {key!r} is missing")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                validate(item, props[key], root, _join(path, key))
            elif extra is False:
                raise SchemaViolation(_join(path, key), "unknown key (not in the plan schema)")
            elif isinstance(extra, dict):
                validate(item, extra, root, _join(path, key))
    return None
