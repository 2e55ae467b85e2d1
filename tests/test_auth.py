"""Caller authentication: a JWKS server on 127.0.0.1 with keys made here, and the token matrix."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.serving import BackgroundServer
from tests.conftest import (
    PUBLIC_BASE_URL,
    ROOT,
    VALID_TO,
    Handler,
    Sandbox,
    SetEnv,
    body_of,
    build_request,
)

ISSUER = "https://login.example.com/tenant/v2.0"
AUDIENCE = "api://twilio-functions"
SMS_URL = f"{PUBLIC_BASE_URL}/api/SendSms"
GOOD_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
REALM = 'Bearer realm="twilio-functions"'


@pytest.fixture(scope="session")
def jwks_url() -> Iterator[str]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(GOOD_KEY.public_key()))
    keys = {"keys": [{**public, "kid": "good", "use": "sig", "alg": "RS256"}]}

    async def serve(request: web.Request) -> web.Response:
        return web.json_response(keys)

    app = web.Application()
    app.router.add_get("/discovery/keys", serve)
    server = BackgroundServer(app).start()
    yield f"{server.url}/discovery/keys"
    server.stop()


@pytest.fixture
def jwt_env(app_env: SetEnv, jwks_url: str) -> SetEnv:
    def set_env(**overrides: str | None) -> None:
        base: dict[str, str | None] = {
            "CALLER_AUTH": "jwt", "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE,
            "JWT_JWKS_URL": jwks_url, "JWT_LEEWAY_SECONDS": "30",
        }  # fmt: skip
        app_env(**{**base, **overrides})

    set_env()
    return set_env


def token(key: Any = GOOD_KEY, kid: str = "good", algorithm: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=algorithm, headers={"kid": kid})


def send(
    functions: dict[str, Handler], bearer: str | None, to: str = VALID_TO, **headers: str
) -> Any:
    all_headers = {
        **headers,
        **({"Authorization": f"Bearer {bearer}"} if bearer is not None else {}),
    }
    return functions["SendSms"](
        build_request("POST", SMS_URL, json_body={"to": to, "body": "x"}, headers=all_headers)
    )


def unsigned(**claims: Any) -> str:
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "none", "typ": "JWT", "kid": "good"}).encode()
    )
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, **claims}
    payload = base64.urlsafe_b64encode(json.dumps(body).encode())
    return f"{header.decode().rstrip('=')}.{payload.decode().rstrip('=')}."


def tampered() -> str:
    header, payload, signature = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_a_good_token_sends(
    functions: dict[str, Handler], jwt_env: SetEnv, sandbox: Sandbox
) -> None:
    assert send(functions, token()).status_code == 201
    assert len(sandbox.messages()) == 1


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda: token(exp=int(time.time()) - 120), "Signature has expired"),
        (lambda: token(aud="api://someone-else"), "Audience doesn't match"),
        (lambda: token(iss="https://evil.example.com"), "Invalid issuer"),
        (lambda: token(key=ATTACKER_KEY), "Signature verification failed"),
        (lambda: token(kid="nope"), "Unable to find a signing key that matches: 'nope'"),
        (unsigned, "The specified alg value is not allowed"),
        (tampered, "Signature verification failed"),
        (lambda: token(nbf=int(time.time()) + 600), "The token is not yet valid (nbf)"),
        (lambda: token(sub=None), "Token is missing the 'sub' claim"),
        (lambda: "not-a-jwt", "Not enough segments"),
        (lambda: "not a jwt", "Not enough segments"),  # the whole rest is the token
    ],
    ids=["expired", "wrong audience", "wrong issuer", "wrong key", "unknown key id", "alg none",
         "tampered payload", "not yet valid", "no subject", "garbage", "spaces"],
)  # fmt: skip
def test_bad_tokens_are_401_with_a_challenge(
    functions: dict[str, Handler], jwt_env: SetEnv, sandbox: Sandbox, make_token: Any, reason: str
) -> None:
    response = send(functions, make_token())
    assert (response.status_code, body_of(response)) == (
        401,
        {
            "type": "urn:twilio-functions:problem:unauthorized",
            "title": "Unauthorized",
            "status": 401,
            "detail": f"The bearer token is not valid: {reason}",
            "rule": "bearer-token",
        },
    )
    assert response.headers["WWW-Authenticate"] == (
        f'{REALM}, error="invalid_token", error_description="{reason}"'
    )
    assert sandbox.requests() == []


def test_hmac_signed_with_the_public_key_is_refused(
    functions: dict[str, Handler], jwt_env: SetEnv
) -> None:
    from cryptography.hazmat.primitives import serialization

    public_pem = GOOD_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # The classic algorithm confusion: HS256 keyed with the public key. PyJWT will not even
    # sign that, so it is built by hand.
    import hashlib
    import hmac

    header = (
        base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "good"}).encode())
        .decode()
        .rstrip("=")
    )
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 300}
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    response = send(functions, forged)
    assert (response.status_code, body_of(response)["rule"], body_of(response)["detail"]) == (
        401, "bearer-token", "The bearer token is not valid: The specified alg value is not allowed"
    )  # fmt: skip


def test_missing_token_is_401_with_a_bare_challenge(
    functions: dict[str, Handler], jwt_env: SetEnv
) -> None:
    required = {
        "type": "urn:twilio-functions:problem:unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": "A bearer token is required.",
        "rule": "bearer-token",
    }
    for authorization in (None, "Basic YTpi", "Bearer ", "Bearer    "):
        headers = {"Authorization": authorization} if authorization else {}
        response = send(functions, None, **headers)
        assert (response.status_code, body_of(response)) == (401, required), authorization
        assert response.headers["WWW-Authenticate"] == REALM
    assert send(functions, None, Authorization=f"bearer {token()}").status_code == 201


def test_clock_skew_within_leeway_is_accepted(
    functions: dict[str, Handler], jwt_env: SetEnv
) -> None:
    assert send(functions, token(exp=int(time.time()) - 10)).status_code == 201


def test_required_scope_and_role(functions: dict[str, Handler], jwt_env: SetEnv) -> None:
    jwt_env(JWT_REQUIRED_SCOPE="Messages.Send", JWT_REQUIRED_ROLE="Sender")
    response = send(functions, token(scp="Profile.Read", roles=["Sender"]))
    assert (response.status_code, response.headers["WWW-Authenticate"]) == (
        403,
        f'{REALM}, error="insufficient_scope"',
    )
    assert body_of(response) == {
        "type": "urn:twilio-functions:problem:forbidden",
        "title": "Insufficient scope",
        "status": 403,
        "detail": "The token lacks scope Messages.Send.",
        "rule": "grants",
    }
    no_role = send(functions, token(scp="Profile.Read Messages.Send", roles=["Reader"]))
    assert (no_role.status_code, body_of(no_role)["detail"], body_of(no_role)["rule"]) == (
        403, "The token lacks role Sender.", "grants"
    )  # fmt: skip
    neither = send(functions, token(scp="Profile.Read", roles="Sender"))  # roles: a list or none
    assert body_of(neither)["detail"] == "The token lacks scope Messages.Send and role Sender."
    assert (
        send(functions, token(scp="Profile.Read Messages.Send", roles=["Sender"])).status_code
        == 201
    )
    assert send(functions, token(scope="Messages.Send", roles=["Sender"])).status_code == 201


def test_unreachable_keys_are_503(functions: dict[str, Handler], jwt_env: SetEnv) -> None:
    jwt_env(JWT_JWKS_URL="http://127.0.0.1:9/keys")
    response = send(functions, token())
    assert (response.status_code, body_of(response)["detail"]) == (
        503,
        "The identity provider's keys cannot be fetched.",
    )


def test_missing_jwt_settings_are_503_naming_them(
    functions: dict[str, Handler], jwt_env: SetEnv
) -> None:
    jwt_env(JWT_AUDIENCE=None)
    assert body_of(send(functions, token()))["setting"] == "JWT_AUDIENCE"


def test_each_user_has_their_own_limits_and_sees_only_their_own(
    functions: dict[str, Handler], jwt_env: SetEnv
) -> None:
    jwt_env(LIMIT_PER_CALLER="1/hour")
    alice, bob = token(sub="alice"), token(sub="bob")
    sent = send(functions, alice)
    assert sent.status_code == 201
    refused = send(functions, alice, to="+14155550101")
    assert (refused.status_code, body_of(refused)["rule"], body_of(refused)["limit"]) == (
        429, "limit", "caller"
    )  # fmt: skip
    assert send(functions, bob, to="+14155550102").status_code == 201
    sid = body_of(sent)["sid"]

    def read(bearer: str) -> int:
        request = build_request(
            "GET", f"{PUBLIC_BASE_URL}/api/messages/{sid}", route_params={"sid": sid},
            headers={"Authorization": f"Bearer {bearer}"},
        )  # fmt: skip
        return int(functions["MessageStatus"](request).status_code)

    assert (read(alice), read(bob)) == (200, 404)

    def conversation(bearer: str | None) -> tuple[int, list[str]]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        request = build_request(
            "GET", f"{PUBLIC_BASE_URL}/api/conversations/{VALID_TO}",
            route_params={"number": VALID_TO}, headers=headers,
        )  # fmt: skip
        response = functions["Conversation"](request)
        sids = [m["sid"] for m in body_of(response).get("messages", [])]
        return int(response.status_code), sids

    assert conversation(alice) == (200, [sid])
    assert conversation(bob) == (200, [])  # Bob sent elsewhere: Alice's stays hers
    assert conversation(None)[0] == 401


# Easy Auth ------------------------------------------------------------------------------


def principal(*roles: str) -> str:
    claims = [{"typ": "roles", "val": role} for role in roles]
    return base64.b64encode(json.dumps({"auth_typ": "aad", "claims": claims}).encode()).decode()


def test_easyauth_trusts_the_platform_headers_only_behind_the_platform(
    functions: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(CALLER_AUTH="easyauth")
    spoofed = send(functions, None, **{"X-MS-CLIENT-PRINCIPAL-ID": "alice"})
    assert (spoofed.status_code, body_of(spoofed)) == (
        500,
        {
            "type": "urn:twilio-functions:problem:misconfigured",
            "title": "Server misconfigured",
            "status": 500,
            "detail": "The server is misconfigured: setting CALLER_AUTH must be easyauth only "
            "behind App Service Authentication.",
            "setting": "CALLER_AUTH",
        },
    )
    app_env(CALLER_AUTH="easyauth", WEBSITE_AUTH_ENABLED="True", JWT_REQUIRED_ROLE="Sender")
    anonymous = send(functions, None)
    assert (anonymous.status_code, body_of(anonymous)) == (
        401,
        {
            "type": "urn:twilio-functions:problem:unauthorized",
            "title": "Unauthorized",
            "status": 401,
            "detail": "Sign in first: no App Service Authentication principal.",
            "rule": "easyauth",
        },
    )
    headers = {"X-MS-CLIENT-PRINCIPAL-ID": "alice", "X-MS-CLIENT-PRINCIPAL": principal("Reader")}
    reader = send(functions, None, **headers)
    assert (reader.status_code, body_of(reader)["rule"], body_of(reader)["detail"]) == (
        403, "grants", "The token lacks role Sender."
    )  # fmt: skip
    headers["X-MS-CLIENT-PRINCIPAL"] = principal("Sender")
    assert send(functions, None, **headers).status_code == 201


def test_identities_switch_the_host_auth_level_off_for_mobile_routes() -> None:
    code = (
        "import function_app, json;"
        "print(json.dumps({f.get_function_name(): f.get_trigger().auth_level.value"
        " for f in function_app.app.get_functions() if f.is_http_function()}))"
    )
    levels = {}
    for mode in ("function-key", "jwt"):
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env={"CALLER_AUTH": mode, "PATH": ""},
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        levels[mode] = json.loads(result.stdout)
    mobile = ["SendSms", "MakeCall", "MessageStatus", "CallStatus", "StartBroadcast", "Broadcast"]
    assert {name: levels["function-key"][name] for name in mobile} == dict.fromkeys(
        mobile, "function"
    )
    assert {name: levels["jwt"][name] for name in mobile} == dict.fromkeys(mobile, "anonymous")
    for name in ("TwiML", "StatusCallback", "Health", "OpenApi"):
        assert levels["function-key"][name] == levels["jwt"][name] == "anonymous"


@pytest.mark.parametrize("kid", ["a\r\nX-Injected: 1", 'quote" and \\ backslash', "é\u2028\x00"])
def test_a_hostile_key_id_cannot_break_the_challenge(
    functions: dict[str, Handler], jwt_env: SetEnv, kid: str
) -> None:
    response = send(functions, token(kid=kid))
    challenge = response.headers["WWW-Authenticate"]
    assert response.status_code == 401
    assert all(" " <= c <= "~" for c in challenge), challenge
    assert challenge.count('"') == 6  # realm, error and description, each quoted once
    assert body_of(response)["rule"] == "bearer-token"
    assert all(" " <= c <= "~" for c in body_of(response)["detail"])


def encoded(principal: object) -> str:
    return base64.b64encode(json.dumps(principal).encode()).decode()


@pytest.mark.parametrize(
    "header",
    [
        "%%% not base64",
        encoded(["claims"]),  # JSON, but not an object
        encoded({"auth_typ": "aad"}),  # no claims at all
        encoded({"claims": ["Sender", {"typ": "groups", "val": "Sender"}]}),
    ],
)
def test_a_principal_without_the_role_is_403_naming_the_grant(
    functions: dict[str, Handler], app_env: SetEnv, header: str
) -> None:
    app_env(CALLER_AUTH="easyauth", WEBSITE_AUTH_ENABLED="True", JWT_REQUIRED_ROLE="Sender")
    headers = {"X-MS-CLIENT-PRINCIPAL-ID": "alice", "X-MS-CLIENT-PRINCIPAL": header}
    response = send(functions, None, **headers)
    assert (response.status_code, body_of(response)["rule"], body_of(response)["detail"]) == (
        403, "grants", "The token lacks role Sender."
    )  # fmt: skip


def test_a_role_claim_may_be_named_role_or_roles(
    functions: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(CALLER_AUTH="easyauth", WEBSITE_AUTH_ENABLED="True", JWT_REQUIRED_ROLE="Sender")
    for typ in ("role", "roles"):
        principal = encoded({"claims": ["x", {"typ": typ, "val": "Sender"}]})
        headers = {"X-MS-CLIENT-PRINCIPAL-ID": "alice", "X-MS-CLIENT-PRINCIPAL": principal}
        assert send(functions, None, **headers).status_code == 201, typ


def test_each_easyauth_user_has_their_own_limits(
    functions: dict[str, Handler], app_env: SetEnv
) -> None:
    app_env(CALLER_AUTH="easyauth", WEBSITE_AUTH_ENABLED="True", LIMIT_PER_CALLER="1/hour")
    alice = {"X-MS-CLIENT-PRINCIPAL-ID": "alice"}
    assert send(functions, None, **alice).status_code == 201
    refused = send(functions, None, to="+14155550101", **alice)
    assert (refused.status_code, body_of(refused)["limit"]) == (429, "caller")
    bob = {"X-MS-CLIENT-PRINCIPAL-ID": "bob"}
    assert send(functions, None, to="+14155550102", **bob).status_code == 201
