"""The JSON Schema of saved reports, shipped inside the package.

Tools that consume ``sqlwatch report`` JSON (CI gates, dashboards) can validate
against the exact schema of the installed version without a network fetch.
It is read through ``importlib.resources`` so that it is found inside a wheel,
a zip or an editable install alike.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any

__all__ = ["REPORT_SCHEMA_FILE", "load_report_schema"]

REPORT_SCHEMA_FILE = "report.schema.json"


def load_report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``Report.to_dict()``: a fresh dict per call."""
    text = files(__name__).joinpath(REPORT_SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
