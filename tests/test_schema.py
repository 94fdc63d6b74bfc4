"""The JSON Schema is generated from the models and kept fresh."""

import json

import jsonschema
import yaml

from ltxflow.schema import schema_text

from conftest import DEMO, REPO

SCHEMA = REPO / "schemas" / "project.schema.json"


def test_committed_schema_is_fresh():
    assert SCHEMA.read_text() == schema_text(), "schemas/project.schema.json is stale: run `make schema`"


def test_demo_validates_against_the_schema_and_typos_do_not():
    schema = json.loads(SCHEMA.read_text())
    data = yaml.safe_load(DEMO.read_text())
    jsonschema.validate(data, schema)
    data["scenes"][0]["promt"] = "typo"
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        assert "promt" in exc.message
    else:
        raise AssertionError("the schema accepted an unknown key")
