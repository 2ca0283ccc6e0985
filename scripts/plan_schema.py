#!/usr/bin/env python
"""Regenerate planner/plan/schema.json and docs/plan.md from the Plan dataclasses (tests fail until they agree).

    .venv/bin/python scripts/plan_schema.py
"""
from pathlib import Path

from vplan.planner.plan.schema import render_markdown, render_schema

root = Path(__file__).resolve().parent.parent
for path, text in ((root / "planner" / "plan" / "schema.json", render_schema()), (root / "docs" / "plan.md", render_markdown())):
    path.write_text(text)
    print(f"wrote {path}")
