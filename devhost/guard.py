"""Keep web pages out of the local host and the sandbox.

A developer's browser can reach 127.0.0.1: any page it has open may post a form there,
and DNS rebinding lets a page on another name talk to it as if same-origin. With real
credentials in local.settings.json that is real money. So a request is refused when
- its Host is not one of this server's own names (rebinding: the page's name arrives),
- or a browser says it comes from another origin (Origin, Sec-Fetch-Site).
Programs (curl, the twilio library, the sandbox's callbacks, Twilio through a tunnel
named in PUBLIC_BASE_URL) send neither browser header and use a name of ours.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def local_only(extra_hosts: Iterable[str] = ()) -> Middleware:
    """Middleware: `extra_hosts` are further Host values to accept (host or host:port)."""
    extra = frozenset(h.lower() for h in extra_hosts)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "").lower()
        if host not in _own_hosts(request) | extra:
            return _refused(f"Host {host or '(none)'} is not this local server's own name.")
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() != f"{request.scheme}://{host}":
            return _refused("Requests from other origins (web pages) are refused.")
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return _refused("Requests from other sites (web pages) are refused.")
        return await handler(request)

    return guard


def reached_by_own_name(request: web.Request) -> bool:
    """Reached as 127.0.0.1/localhost, not through a public name (a tunnel) it also accepts."""
    return request.headers.get("Host", "").lower() in _own_hosts(request)


def _own_hosts(request: web.Request) -> frozenset[str]:
    socket = request.transport.get_extra_info("sockname") if request.transport else None
    port = socket[1] if socket else None
    names = {f"{name}:{port}" for name in LOCAL_NAMES} if port else set()
    if port == 80:
        names.update(LOCAL_NAMES)
    return frozenset(names)


def _refused(detail: str) -> web.Response:
    problem = {
        "type": "urn:twilio-functions:problem:local-host",
        "title": "Refused by the local host",
        "status": 403,
        "detail": detail,
        "rule": "local-host",
    }
    return web.json_response(problem, status=403, content_type="application/problem+json")
