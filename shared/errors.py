"""The one exception family handlers raise; shared/http_io.py turns it into problem+json."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any


class AppError(Exception):
    """An HTTP-visible failure: status, a short title, and a detail safe to show callers."""

    status_code: int = HTTPStatus.INTERNAL_SERVER_ERROR
    problem_type: str = "about:blank"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status_code: int | None = None,
        title: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if status_code is not None:
            self.status_code = status_code
        self.title = title or HTTPStatus(self.status_code).phrase
        self.detail = detail or self.title
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(self.detail)


class BadRequest(AppError):
    status_code = HTTPStatus.BAD_REQUEST
    problem_type = "urn:twilio-functions:problem:bad-request"


class ValidationFailed(BadRequest):
    """One or more fields are wrong; each is listed so a client can point at it."""

    problem_type = "urn:twilio-functions:problem:validation"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        fields = ", ".join(sorted({error["field"] for error in errors}))
        super().__init__(
            f"Invalid fields: {fields}.",
            title="Request validation failed",
            extra={"errors": errors},
        )


REALM = 'Bearer realm="twilio-functions"'


def printable(text: str, limit: int = 200) -> str:
    """Text that may quote a caller's input (a token's `kid`), safe in a header's quoted
    string: printable ASCII only (no CR/LF), no quotes or backslashes, bounded."""
    kept = "".join(c for c in text if " " <= c <= "~")
    return kept.replace("\\", "/").replace('"', "'")[:limit]


def bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    """A WWW-Authenticate value (RFC 6750)."""
    challenge = REALM
    if error:
        challenge += f', error="{error}"'
    if description:
        challenge += f', error_description="{printable(description)}"'
    return challenge


class Unauthorized(AppError):
    """No or bad credentials: 401 with a WWW-Authenticate challenge (RFC 6750)."""

    status_code = HTTPStatus.UNAUTHORIZED
    problem_type = "urn:twilio-functions:problem:unauthorized"

    def __init__(
        self, detail: str, challenge: str = REALM, *, rule: str = "authentication"
    ) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": challenge}, extra={"rule": rule})


class Forbidden(AppError):
    status_code = HTTPStatus.FORBIDDEN
    problem_type = "urn:twilio-functions:problem:forbidden"


class MethodNotAllowed(AppError):
    status_code = HTTPStatus.METHOD_NOT_ALLOWED

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(
            f"{method} is not allowed here; use {', '.join(allowed)}.",
            headers={"Allow": ", ".join(allowed)},
        )


class UnsupportedMediaType(AppError):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class ServiceUnavailable(AppError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    problem_type = "urn:twilio-functions:problem:unavailable"


class MissingSetting(ServiceUnavailable):
    """A setting this operation needs is not configured (the app itself still runs)."""

    problem_type = "urn:twilio-functions:problem:missing-setting"

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(
            f"The server is not configured for this operation: setting {key} is missing.",
            title="Server not configured",
            extra={"setting": key},
        )


class InvalidSetting(AppError):
    """A configured value cannot be parsed; names the key, never echoes the value."""

    problem_type = "urn:twilio-functions:problem:misconfigured"

    def __init__(self, key: str, expected: str) -> None:
        self.key, self.expected = key, expected
        super().__init__(
            f"The server is misconfigured: setting {key} must be {expected}.",
            title="Server misconfigured",
            extra={"setting": key},
        )
