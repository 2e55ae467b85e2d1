"""Field-by-field validation that reports every bad field at once."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.errors import ValidationFailed


class FieldReader:
    """Reads typed fields from a parsed body, collecting errors instead of stopping."""

    def __init__(self, data: Mapping[str, Any], allowed: Iterable[str]) -> None:
        self._data = data
        self.errors: list[dict[str, str]] = [
            {"field": name, "message": "is not a known field"}
            for name in sorted(set(data) - set(allowed))
        ]

    def error(self, field: str, message: str) -> None:
        self.errors.append({"field": field, "message": message})

    def text(self, field: str, *, required: bool = False, max_length: int) -> str | None:
        value = self._data.get(field)
        if value is None or value == "":
            if required:
                self.error(field, "is required")
            return None
        if not isinstance(value, str):
            self.error(field, "must be a string")
            return None
        if len(value) > max_length:
            self.error(field, f"must be at most {max_length} characters")
            return None
        return value

    def text_list(self, field: str, *, max_items: int, max_length: int) -> tuple[str, ...]:
        value = self._data.get(field)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            self.error(field, "must be a string or a list of strings")
            return ()
        if len(items) > max_items:
            self.error(field, f"must have at most {max_items} items")
            return ()
        if any(len(item) > max_length for item in items):
            self.error(field, f"items must be at most {max_length} characters")
            return ()
        return tuple(items)

    def check(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)
