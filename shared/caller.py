"""Who is calling: the one pluggable place that names the caller of a mobile route.

CALLER_AUTH chooses how: `function-key` (the host checked a key; the caller is that key,
known by its digest), `easyauth` (App Service Authentication signed the user in and
injected X-MS-CLIENT-PRINCIPAL*), or `jwt` (a bearer token checked here). The id feeds
per-caller limits and idempotency scopes, and only the caller that created a message,
call or broadcast may read or cancel it, in every mode.

A client address is a poor identity (a phone moving from Wi-Fi to mobile data becomes
someone else, and an IPv6 client owns a whole /64): it is used only where no key was
presented (the local host, which does not check keys, as with `func start`), and then an
IPv6 address counts as its /64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from shared.errors import Forbidden, InvalidSetting, Unauthorized, bearer_challenge
from shared.settings import Settings

KEY_HEADER = "x-functions-key"
KEY_QUERY = "code"


@dataclass(frozen=True)
class Caller:
    id: str


def mobile_auth_level() -> func.AuthLevel:
    """The host's auth level for mobile routes, decided when the app is indexed (the host
    checks keys before our code runs): a function key, or none when we check identities."""
    mode = os.environ.get("CALLER_AUTH", "").strip().lower() or "function-key"
    return func.AuthLevel.FUNCTION if mode == "function-key" else func.AuthLevel.ANONYMOUS


def identify_caller(req: func.HttpRequest, settings: Settings) -> Caller:
    if settings.caller_auth == "jwt":
        from shared.jwt_auth import verify_bearer_token  # PyJWT only where it is used

        claims = verify_bearer_token(req, settings)
        _require_grants(claims.get("scp") or claims.get("scope"), claims.get("roles"), settings)
        return Caller(f"user:{claims['sub']}")
    if settings.caller_auth == "easyauth":
        return _easyauth_caller(req, settings)
    key = function_key(req)
    if key:
        return Caller(f"key:{hashlib.sha256(key.encode()).hexdigest()[:32]}")
    return Caller(client_address(req))


def function_key(req: func.HttpRequest) -> str | None:
    """The key the host checked: the x-functions-key header, else the first `code` query
    value (the host's order). Never stored or logged: only its digest names the caller."""
    header = str(req.headers.get(KEY_HEADER, "")).split(",")[0].strip()
    if header:
        return header
    query = parse_qsl(urlsplit(req.url).query, keep_blank_values=True)
    return next((value for name, value in query if name.lower() == KEY_QUERY and value), None)


def client_address(req: func.HttpRequest) -> str:
    """The client address the platform appended to X-Forwarded-For (the last hop):
    clients can write anything into the entries before it. Azure adds it as `ip:port`.
    An IPv6 client is its /64: one subscriber gets a whole /64 to pick addresses from."""
    forwarded = req.headers.get("X-Forwarded-For", "")
    hop = forwarded.split(",")[-1].strip()
    if not hop:
        return "ip:unknown"
    address = _without_port(hop)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"ip:{address}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"ip:{parsed.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((parsed, 64), strict=False)}"
    return f"ip:{parsed}"


def _easyauth_caller(req: func.HttpRequest, settings: Settings) -> Caller:
    if not settings.platform_auth_enabled:
        # Without App Service Authentication in front, anyone can send these headers.
        raise InvalidSetting("CALLER_AUTH", "easyauth only behind App Service Authentication")
    principal_id = req.headers.get("X-MS-CLIENT-PRINCIPAL-ID", "").strip()
    if not principal_id:
        raise Unauthorized(
            "Sign in first: no App Service Authentication principal.", rule="easyauth"
        )
    roles = [c.get("val") for c in _principal_claims(req) if c.get("typ") in ("roles", "role")]
    _require_grants(None, roles, settings)
    return Caller(f"user:{principal_id}")


def _principal_claims(req: func.HttpRequest) -> list[dict[str, Any]]:
    encoded = req.headers.get("X-MS-CLIENT-PRINCIPAL", "")
    if not encoded:
        return []
    try:
        principal = json.loads(base64.b64decode(encoded))
    except (binascii.Error, ValueError):
        return []
    claims = principal.get("claims", []) if isinstance(principal, dict) else []
    return [c for c in claims if isinstance(c, dict)]


def _require_grants(scopes: Any, roles: Any, settings: Settings) -> None:
    granted_scopes = scopes.split() if isinstance(scopes, str) else []
    granted_roles = roles if isinstance(roles, list) else []
    missing = []
    if settings.jwt_required_scope and settings.jwt_required_scope not in granted_scopes:
        missing.append(f"scope {settings.jwt_required_scope}")
    if settings.jwt_required_role and settings.jwt_required_role not in granted_roles:
        missing.append(f"role {settings.jwt_required_role}")
    if missing:
        raise Forbidden(
            f"The token lacks {' and '.join(missing)}.",
            title="Insufficient scope",
            headers={"WWW-Authenticate": bearer_challenge("insufficient_scope")},
            extra={"rule": "grants"},
        )


def _without_port(address: str) -> str:
    if address.startswith("["):  # [v6]:port
        return address[1:].split("]")[0]
    if address.count(":") == 1:  # v4:port
        return address.split(":")[0]
    return address  # bare v4 or v6
