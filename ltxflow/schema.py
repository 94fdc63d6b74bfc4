"""The project file's JSON Schema, generated from the models (schemas/project.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from ltxflow.project.model import Project


def project_schema() -> dict[str, Any]:
    schema = Project.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text() -> str:
    """The schema as the committed file holds it: sorted keys, two-space indent, trailing newline."""
    return json.dumps(project_schema(), indent=2, sort_keys=True) + "\n"
