"""How a command describes its query parameters and its answer, in JSON Schema: the
pieces `@command` takes and api/openapi.py assembles into /api/v1/openapi.json.

A parameter's schema says what the handler accepts (lengths, ranges, choices), so a
client generated from the document, or a fuzzer, knows the valid calls; the handler
still checks everything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]

TEXT: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
# config/file.py's valid_token
TOKEN_SCHEMA: Schema = {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "maxLength": 64}
# store/timefmt.py's ISO 8601 forms (2018-03-07T120101+08, 2018-03-07T12:01:01+08:00, ...)
TIME_SCHEMA: Schema = {
    "type": "string",
    "maxLength": 64,
    "pattern": r"^\d{4}-?\d{2}-?\d{2}([T ]\d{2}:?\d{2}(:?\d{2})?)?(Z|[+-]\d{2}(:?\d{2})?)?$",
    "examples": ["2018-03-07T120101+08"],
}
# store/timefmt.py's parse_offset
ZONE_SCHEMA: Schema = {"type": "string", "maxLength": 16, "pattern": r"^(Z|UTC|[+-]?\d{1,2}(:?\d{2})?)$"}
# store/layout.py's check_name (the extension is optional)
FILENAME_SCHEMA: Schema = {"type": "string", "maxLength": 128, "pattern": "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"}


@dataclass(frozen=True)
class Param:
    """One query parameter of a command."""

    name: str
    schema: Schema
    required: bool = False
    about: str = ""


def text(name: str, max_len: int = 1024, *, required: bool = False, about: str = "") -> Param:
    """A free string, as `commands.param` takes it (at most `max_len` characters)."""
    return Param(name, {"type": "string", "maxLength": max_len}, required, about)


def shaped(name: str, schema: Schema, *, required: bool = False, about: str = "") -> Param:
    return Param(name, schema, required, about)


def token(*, required: bool = True, about: str = "a source's token") -> Param:
    return Param("token", TOKEN_SCHEMA, required, about)


def flag(name: str, about: str = "") -> Param:
    """`commands.bool_param`: true/false (also 1/0, yes/no)."""
    return Param(name, BOOL, False, about)


def choice(name: str, values: tuple[str, ...], *, required: bool = False, about: str = "") -> Param:
    return Param(name, {"type": "string", "enum": list(values)}, required, about)


def number(name: str, low: float, high: float, *, about: str = "") -> Param:
    return Param(name, {"type": "number", "minimum": low, "maximum": high}, False, about)


def whole(name: str, low: int, high: int, *, required: bool = False, about: str = "") -> Param:
    return Param(name, {"type": "integer", "minimum": low, "maximum": high}, required, about)


def obj(**properties: Schema) -> Schema:
    """An object with these fields (others may come too: answers grow)."""
    return {"type": "object", "properties": properties}


def list_of(item: Schema) -> Schema:
    return {"type": "array", "items": item}
