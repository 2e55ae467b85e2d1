"""Validation that reports every bad field at once.

Request bodies are declared once, as msgspec Structs (shared/shapes.py): `decode` checks a
parsed body against one, field by field so that every error is listed, and the OpenAPI
schemas come from the same declarations. `Errors` collects what the semantic checks
(E.164, policy inputs, TwiML parameters) find on top.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.errors import ValidationFailed

if TYPE_CHECKING:
    import msgspec


class Errors:
    """Field errors collected while checking, raised together by `check`."""

    def __init__(self) -> None:
        self.found: list[dict[str, str]] = []

    def error(self, field: str, message: str) -> None:
        self.found.append({"field": field, "message": message})

    def has(self, field: str) -> bool:
        return any(error["field"] == field for error in self.found)

    def check(self) -> None:
        if self.found:
            raise ValidationFailed(self.found)


def decode(
    fields: Mapping[str, Any], shape: type[msgspec.Struct], errors: Errors
) -> dict[str, Any]:
    """The fields of `shape` that are valid, by attribute name; every problem (unknown,
    missing, wrong type, too long) is recorded in `errors`, so that checks on the valid
    fields can go on and report theirs too. Build the shape once `errors.check()` passed.
    An empty string counts as absent: a form cannot leave a field out as cleanly as JSON."""
    import msgspec  # here, not at import: it stays off the cold TwiML path

    declared = _declared(shape)
    for name in sorted(set(fields) - set(declared)):
        errors.error(name, "is not a known field")
    values: dict[str, Any] = {}
    for name, field in declared.items():
        value = fields.get(name)
        if value is None or value == "":
            if field.required:
                errors.error(name, "is required")
            continue
        try:
            values[field.name] = msgspec.convert(value, type=field.type)
        except msgspec.ValidationError as exc:
            errors.error(name, _message(str(exc)))
    return values


@functools.cache
def _declared(shape: type[msgspec.Struct]) -> dict[str, msgspec.structs.FieldInfo]:
    """The shape's fields by their name in requests: worked out once per shape, since
    msgspec evaluates the annotations afresh on every call (a quarter of a SendSms)."""
    import msgspec

    return {field.encode_name: field for field in msgspec.structs.fields(shape)}


_ITEM = r" - at `\$\[\d+\]`"  # msgspec's suffix for an error in a list item
_MESSAGES = [
    (r"Expected `(?:str|array)` of length >= 1", "must not be empty"),
    (r"Expected `str` of length <= (\d+)", "must be at most {} characters"),
    (r"Expected `str` of length >= (\d+)", "must be at least {} characters"),
    (rf"Expected `str` of length <= (\d+){_ITEM}", "items must be at most {} characters"),
    (r"Expected `array` of length <= (\d+)", "must have at most {} items"),
    (r"Expected `array` of length >= (\d+)", "must have at least {} items"),
    (r"Expected `str`, got `\w+`", "must be a string"),
    (rf"Expected `str`, got `\w+`{_ITEM}", "items must be strings"),
    (r"Expected `array`, got `\w+`", "must be a list"),
    (r"Expected `str \| array`, got `\w+`", "must be a string or a list of strings"),
]
_PATTERNS = [(re.compile(pattern), message) for pattern, message in _MESSAGES]


def _message(text: str) -> str:
    """msgspec's wording, said the way the rest of the API says it."""
    text = text.replace(" | null`", "`")  # absent is always allowed for optional fields
    for pattern, message in _PATTERNS:
        match = pattern.fullmatch(text)
        if match:
            return message.format(*match.groups())
    return text
