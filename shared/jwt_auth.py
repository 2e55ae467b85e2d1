"""Bearer tokens from any OIDC issuer (Entra ID included), checked with PyJWT.

The issuer's signing keys come from its JWKS through PyJWKClient, which caches them and
refetches when a token names a key it has not seen (key rotation). Only asymmetric
algorithms are accepted (JWT_ALGORITHMS), so `alg: none` and HMAC tokens are refused.
"""

from __future__ import annotations

import functools
from typing import Any

import azure.functions as func
import jwt

from shared.errors import ServiceUnavailable, Unauthorized, bearer_challenge, printable
from shared.settings import Settings

JWKS_CACHE_SECONDS = 300


def verify_bearer_token(req: func.HttpRequest, settings: Settings) -> dict[str, Any]:
    issuer = settings.require("JWT_ISSUER")
    audience = settings.require("JWT_AUDIENCE")
    jwks_url = settings.require("JWT_JWKS_URL")
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer token is required.", rule="bearer-token")
    try:
        key = _jwks(jwks_url).get_signing_key_from_jwt(token.strip())
        claims: dict[str, Any] = jwt.decode(
            token.strip(),
            key.key,
            algorithms=list(settings.jwt_algorithms),
            audience=audience,
            issuer=issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.PyJWKClientConnectionError as exc:
        raise ServiceUnavailable("The identity provider's keys cannot be fetched.") from exc
    except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
        # The message can quote the token's own header (an unknown `kid`): it is cleaned
        # before it goes into a header or a body.
        description = printable(str(exc))
        raise Unauthorized(
            f"The bearer token is not valid: {description}",
            bearer_challenge("invalid_token", description),
            rule="bearer-token",
        ) from None
    return claims


@functools.lru_cache(maxsize=4)
def _jwks(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=JWKS_CACHE_SECONDS, timeout=5)
