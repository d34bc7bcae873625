"""/api/v1/openapi.json against the code: every command described, nothing else, every
parameter the handlers read described and every described one read, a valid document."""

from __future__ import annotations

import ast
from pathlib import Path

import jsonschema
import schemathesis

import gateway.app  # noqa: F401 - imports every api module, which registers its commands
from gateway.api.commands import COMMANDS, DESCRIBED
from gateway.api.openapi import PATH, SERVER_TOKEN, document

REPO = Path(__file__).resolve().parents[2]
# Where the handlers (and the helpers they share) read their query parameters.
READERS = [*sorted((REPO / "gateway" / "api").glob("*.py")), REPO / "gateway" / "playback" / "range.py"]
PARAM_HELPERS = {"param", "bool_param", "enum_param", "number_param", "int_param"}


def described_commands() -> set[str]:
    return {path.removeprefix("/api/v1/") for path in document()["paths"] if path != PATH}


def test_every_registered_command_is_described_and_no_other():
    assert {name.lower() for name in described_commands()} == set(COMMANDS)
    assert len(described_commands()) == len(COMMANDS)


def test_the_document_names_commands_as_documented():
    names = described_commands()
    assert {"Login", "GetSrc", "AddSrcRTSP", "OnvifProbe", "DownloadRecord", "GetLoadingImage"} <= names


def test_sessions_are_a_query_api_key_and_only_login_and_loading_image_go_without():
    doc = document()
    assert doc["components"]["securitySchemes"]["session"] == {
        "type": "apiKey",
        "in": "query",
        "name": "session",
        "description": "strSession of Login",
    }
    public = {path for path, item in doc["paths"].items() if item["get"].get("security") == []}
    assert public == {"/api/v1/Login", "/api/v1/GetLoadingImage", PATH}


def test_the_document_is_valid_openapi_3_1_with_valid_parameter_schemas():
    doc = document()
    assert doc["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(doc).validate()
    for item in doc["paths"].values():
        for parameter in item["get"].get("parameters", []):
            jsonschema.Draft202012Validator.check_schema(parameter["schema"])


def names_read(source: str) -> set[str]:
    """Query parameter names a module reads: param(request, "x"...), query.get("x"), "x" in query."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            func = node.func
            helper = func.id if isinstance(func, ast.Name) else None
            if helper in PARAM_HELPERS and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            owner = node.func.value
            is_query = (isinstance(owner, ast.Attribute) and owner.attr == "query") or (
                isinstance(owner, ast.Name) and owner.id == "query"
            )
            if is_query and node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
        if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In) and isinstance(node.left, ast.Constant):
            right = node.comparators[0]
            if isinstance(right, ast.Attribute) and right.attr == "query":
                names.add(node.left.value)
    return names


def test_the_parameters_the_handlers_read_are_the_ones_described():
    read = set().union(*(names_read(path.read_text()) for path in READERS)) - {"session"}
    described = {p.name for entry in DESCRIBED.values() for p in entry.params}
    described.add(SERVER_TOKEN["name"])  # the cloud's servertoken=, described on every command it forwards
    assert read - described == set(), "read but not described"
    assert described - read == set(), "described but never read"


def test_names_read_finds_each_way_of_reading():
    source = 'param(request, "a")\nrequest.query.get("b")\nquery.get("c", "")\nif "d" in request.query: pass'
    assert names_read(source) == {"a", "b", "c", "d"}


def test_binary_answers_say_their_media_type():
    paths = document()["paths"]
    assert set(paths["/api/v1/GetImage"]["get"]["responses"]["200"]["content"]) == {"image/jpeg"}
    assert set(paths["/api/v1/DownloadRecord"]["get"]["responses"]["200"]["content"]) == {"video/mp4"}
    assert set(paths["/api/v1/GetLoadingImage"]["get"]["responses"]["200"]["content"]) == {"image/svg+xml"}
