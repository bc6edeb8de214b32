"""One contract: the models in the native API's OpenAPI schema are the SDK's models (``dicomflow.schemas``),
so what the server documents and sends is what ``dicomflow.client`` parses.

Each covered operation's JSON bodies (success responses and request bodies) refer only to components named
after a model of :mod:`dicomflow.schemas`, and each such component is exactly that model's JSON schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from dicomflow import schemas
from dicomflow.api import create_app
from dicomflow.config import Settings

API_PREFIX = "/api/v1/"
REF = "#/components/schemas/"
# The OpenAPI tags whose operations return dicomflow.schemas models; a router joins the contract by adding
# its tag here.
COVERED_TAGS = frozenset({"processing", "uploads"})

Operation = tuple[str, str, dict[str, Any]]


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("contract")
    settings = Settings.model_validate(
        {"data_dir": data_dir, "index": {"url": ""}, "storage": {"root": None, "fsync": False}}
    )
    app = create_app(settings)
    try:
        yield app.openapi()
    finally:
        app.state.application.close()


def covered(openapi: dict[str, Any]) -> list[Operation]:
    """(method, path, operation) of each native operation under the contract."""
    return [
        (method, path, operation)
        for path, operations in openapi["paths"].items()
        if path.startswith(API_PREFIX)
        for method, operation in operations.items()
        if COVERED_TAGS & set(operation.get("tags", ()))
    ]


def json_bodies(operation: dict[str, Any]) -> Iterator[tuple[JsonSchemaMode, dict[str, Any]]]:
    """The JSON schemas of an operation's success responses (serialization) and request body (validation)."""
    for status, response in operation["responses"].items():
        if status.startswith("2") and "application/json" in response.get("content", {}):
            yield "serialization", response["content"]["application/json"]["schema"]
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body is not None:
        yield "validation", body["schema"]


def refs(schema: Any) -> Iterator[str]:
    """The component names a schema refers to, directly or inside arrays and unions."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            yield schema["$ref"].removeprefix(REF)
        for value in schema.values():
            yield from refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from refs(item)


def inline_objects(schema: Any) -> Iterator[dict[str, Any]]:
    """Object schemas written out in place rather than referring to a model."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" or "properties" in schema:
            yield schema
        for value in schema.values():
            yield from inline_objects(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from inline_objects(item)


def sdk_model(name: str) -> type[BaseModel] | type[Enum]:
    assert name in schemas.__all__, f"component {name!r} is not a model of dicomflow.schemas"
    found = getattr(schemas, name)
    assert issubclass(found, BaseModel | Enum), name
    return found  # type: ignore[no-any-return]  # getattr on a module is Any


def test_the_covered_routers_have_operations(openapi: dict[str, Any]) -> None:
    tags = {tag for _, _, operation in covered(openapi) for tag in operation.get("tags", ())}
    assert tags >= COVERED_TAGS
    assert len(covered(openapi)) >= 23  # the processing and upload routes


def test_every_json_body_of_a_covered_route_is_an_sdk_model(openapi: dict[str, Any]) -> None:
    for method, path, operation in covered(openapi):
        for _, schema in json_bodies(operation):
            assert not list(inline_objects(schema)), f"{method.upper()} {path} has an ad-hoc object: {schema}"
            for name in refs(schema):
                sdk_model(name)


def test_each_component_is_the_sdk_models_own_json_schema(openapi: dict[str, Any]) -> None:
    components = openapi["components"]["schemas"]
    used: dict[str, JsonSchemaMode] = {}
    for _, _, operation in covered(openapi):
        for mode, schema in json_bodies(operation):
            used.update((name, mode) for name in refs(schema))
    assert {"Study", "Job", "ResultFile", "Rule", "ReportType", "Review", "RuleCreate"} <= set(used)
    assert {"Upload", "UploadStart", "ReceivedFiles", "FileList"} <= set(used)
    models = [(model, mode) for name, mode in used.items() if issubclass(model := sdk_model(name), BaseModel)]
    _, generated = models_json_schema(models, ref_template=REF + "{model}")
    expected = generated["$defs"]
    assert {"Stage", "JobState", "StageEntry", "Finding"} <= set(expected)  # nested models and enums too
    for name, schema in expected.items():
        sdk_model(name)
        assert components[name] == without_nulls(schema), name


def without_nulls(schema: Any) -> Any:
    """A JSON schema as the OpenAPI document holds it: FastAPI dumps it with ``exclude_none`` (so a
    ``"default": null`` is left out)."""
    if isinstance(schema, dict):
        return {key: without_nulls(value) for key, value in schema.items() if value is not None}
    if isinstance(schema, list):
        return [without_nulls(item) for item in schema]
    return schema


def test_the_enums_are_defined_once() -> None:
    from dicomflow import flow

    assert schemas.Stage is flow.Stage
    assert schemas.JobState is flow.JobState
