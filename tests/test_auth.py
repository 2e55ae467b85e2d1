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
    ("name", "make_token"),
    [
        ("expired", lambda: token(exp=int(time.time()) - 120)),
        ("wrong audience", lambda: token(aud="api://someone-else")),
        ("wrong issuer", lambda: token(iss="https://evil.example.com")),
        ("wrong key", lambda: token(key=ATTACKER_KEY)),
        ("unknown key id", lambda: token(kid="nope")),
        ("alg none", unsigned),
        ("tampered payload", tampered),
        ("not yet valid", lambda: token(nbf=int(time.time()) + 600)),
        ("no subject", lambda: token(sub=None)),
        ("garbage", lambda: "not-a-jwt"),
    ],
)
def test_bad_tokens_are_401_with_a_challenge(
    functions: dict[str, Handler], jwt_env: SetEnv, sandbox: Sandbox, name: str, make_token: Any
) -> None:
    response = send(functions, make_token())
    assert response.status_code == 401, name
    assert response.headers["WWW-Authenticate"].startswith(f'{REALM}, error="invalid_token"')
    body = body_of(response)
    assert (body["type"], body["title"], body["status"]) == (
        "urn:twilio-functions:problem:unauthorized",
        "Unauthorized",
        401,
    )
    assert body["detail"].startswith("The bearer token is not valid: ")
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
    assert send(functions, forged).status_code == 401


def test_missing_token_is_401_with_a_bare_challenge(
    functions: dict[str, Handler], jwt_env: SetEnv
) -> None:
    response = send(functions, None)
    assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, REALM)
    assert body_of(response)["detail"] == "A bearer token is required."
    basic = send(functions, None, Authorization="Basic YTpi")
    assert basic.status_code == 401


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
    assert body_of(response)["detail"] == "The token lacks scope Messages.Send."
    assert (
        send(functions, token(scp="Profile.Read Messages.Send", roles=["Reader"])).status_code
        == 403
    )
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
    assert send(functions, alice, to="+14155550101").status_code == 429
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
    assert (spoofed.status_code, body_of(spoofed)["setting"]) == (500, "CALLER_AUTH")
    app_env(CALLER_AUTH="easyauth", WEBSITE_AUTH_ENABLED="True", JWT_REQUIRED_ROLE="Sender")
    assert send(functions, None).status_code == 401
    headers = {"X-MS-CLIENT-PRINCIPAL-ID": "alice", "X-MS-CLIENT-PRINCIPAL": principal("Reader")}
    assert send(functions, None, **headers).status_code == 403
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
