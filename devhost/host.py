"""The local Functions host: only what the host itself does, everything else in the worker.

The host owns the HTTP server and routing: `/{routePrefix}/{route}`, matched without
regard to case, route parameters, the trigger's methods (another method gets the host's
bare 404), the 100 MB body limit. It turns a request into the RPC `RpcHttp` message,
has azure-functions-runtime invoke the function (devhost/worker.py), and turns the
`RpcHttp` it returns into the response; a failed invocation is the host's empty 500.
Auth levels are shown but not enforced, as with `func start`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, unquote

from aiohttp import web

from devhost.guard import local_only, reached_by_own_name
from devhost.rpc import messages as rpc
from devhost.worker import IndexedFunction, InProcessWorker

logger = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 100 * 1024 * 1024  # the host's default request body limit
# Route templates: {name}, {name:constraint}; optional and catch-all parameters are not used.
_PARAMETER = re.compile(r"\{(\w+)(?::(\w+))?(\?)?\}")
_ESCAPED = re.compile(r"(%[0-9A-Fa-f]{2})")
_PATH_CHARACTERS = "/:@!$&'()*+,;=-._~"
_CONSTRAINTS = {
    None: r"[^/]+",
    "alpha": r"[A-Za-z]+",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
}


@dataclass(frozen=True)
class HttpRoute:
    function: IndexedFunction
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]  # empty: every method
    auth_level: str
    trigger_arg: str
    durable_arg: str | None  # the durableClient input binding's name, if it takes one

    @property
    def needs_durable(self) -> bool:
        return self.durable_arg is not None


def http_routes(functions: list[IndexedFunction], prefix: str) -> list[HttpRoute]:
    """The HTTP functions' routes in indexing order (the host tries them in that order)."""
    routes: list[HttpRoute] = []
    for function in functions:
        if not function.is_http:
            continue
        trigger = function.trigger
        template = str(trigger.get("route") or function.name).strip("/")
        methods = frozenset(m.upper() for m in trigger.get("methods") or ())
        _refuse_as_the_host_does(template, methods, routes)
        routes.append(
            HttpRoute(
                function=function,
                template=template,
                pattern=compile_route(prefix, template),
                methods=methods,
                auth_level=str(trigger.get("authLevel", "function")).lower(),
                trigger_arg=str(trigger["name"]),
                durable_arg=durable_arg(function),
            )
        )
    return routes


def durable_arg(function: IndexedFunction) -> str | None:
    """The name of the function's durableClient input binding, if it takes one."""
    return next(
        (str(b["name"]) for b in function.bindings if b.get("type") == "durableClient"), None
    )


def _refuse_as_the_host_does(
    template: str, methods: frozenset[str], earlier: list[HttpRoute]
) -> None:
    if template.lower().startswith(("admin", "runtime")):
        raise ValueError(f"route {template!r}: the host reserves admin/ and runtime/")
    for route in earlier:
        overlap = not methods or not route.methods or methods & route.methods
        if route.template.lower() == template.lower() and overlap:
            raise ValueError(f"route {template!r} is declared twice")


def compile_route(prefix: str, template: str) -> re.Pattern[str]:
    """Literal segments match without regard to case; a trailing slash is ignored."""
    parts = []
    position = 0
    for match in _PARAMETER.finditer(template):
        name, constraint, optional = match.groups()
        if optional or constraint not in _CONSTRAINTS:
            raise ValueError(f"route {template!r}: {match.group(0)} is not supported here")
        parts.append(re.escape(template[position : match.start()]))
        parts.append(f"(?P<{name}>{_CONSTRAINTS[constraint]})")
        position = match.end()
    parts.append(re.escape(template[position:]))
    path = "/".join(p for p in (prefix, "".join(parts)) if p)
    return re.compile(f"/{path}/?", re.IGNORECASE)


def create_host_app(public_hosts: Iterable[str] = ()) -> web.Application:
    """The host's server; `public_hosts` are names it is reached by besides its own (the
    host of PUBLIC_BASE_URL, e.g. a tunnel that brings Twilio's requests here)."""
    return web.Application(
        client_max_size=MAX_REQUEST_BYTES, middlewares=[local_only(public_hosts)]
    )


def add_function_routes(
    app: web.Application,
    worker: InProcessWorker,
    routes: list[HttpRoute],
    durable_client: Callable[[str], str] | None = None,
) -> None:
    """Serve `routes` through `worker`; added last, as a catch-all behind other routes.
    `durable_client(origin)` is the durableClient binding JSON (the Durable stand-in's);
    without it, functions that take one answer 501."""

    async def dispatch(request: web.Request) -> web.StreamResponse:
        path = _decoded_path(request.raw_path)
        found = _match(routes, request.method, path)
        if found is None:
            return web.Response(status=404)
        route, route_params = found
        if route.needs_durable and durable_client is None:
            return _durable_unavailable()
        if not _headers_are_utf8(request):
            return web.Response(status=400)  # Kestrel refuses such requests, empty 400
        http = to_rpc_http(request, path, await request.read(), route_params)
        inputs = {route.trigger_arg: rpc.TypedData(http=http)}
        if route.durable_arg is not None and durable_client is not None:
            # As the extension delivers it: the binding JSON as TypedData.string.
            origin = f"{request.scheme}://{request.host}"
            inputs[route.durable_arg] = rpc.TypedData(string=durable_client(origin))
        invocation = await worker.invoke(route.function, inputs)
        if not invocation.succeeded:
            logger.error("Function %s failed: %s", route.function.name, invocation.error)
            return web.Response(status=500)
        return from_rpc_http(invocation.return_value, route.function.name)

    app.router.add_route("*", "/{path:(?s:.*)}", dispatch)  # (?s): paths may hold %0A


# What the host passes a timer trigger (TimerInfo as JSON); azure.functions' TimerRequest
# converter reads IsPastDue, ScheduleStatus and Schedule from it.
_TIMER_NOW = json.dumps(
    {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": False}
)


def timer_functions(functions: list[IndexedFunction]) -> list[IndexedFunction]:
    return [f for f in functions if f.trigger.get("type") == "timerTrigger"]


def add_admin_routes(
    app: web.Application,
    worker: InProcessWorker,
    functions: list[IndexedFunction],
    durable_client: Callable[[str], str] | None = None,
) -> None:
    """`POST /admin/functions/{name}` runs a timer function now, through the worker, as
    the host's admin API does; timers are not run on their schedule here. Unlike the
    host (202 at once) it answers when the run is over: 202, or 500 with the error.
    A timer that takes a durableClient gets `durable_client(origin)`, or answers 501."""
    timers = {f.name.lower(): f for f in timer_functions(functions)}

    async def run_now(request: web.Request) -> web.Response:
        function = timers.get(request.match_info["name"].lower())
        if function is None or not reached_by_own_name(request):  # the host wants its master key
            return web.Response(status=404)
        trigger_arg = str(function.trigger["name"])
        inputs = {trigger_arg: rpc.TypedData(json=_TIMER_NOW)}
        if (client_arg := durable_arg(function)) is not None:
            if durable_client is None:
                return _durable_unavailable()
            origin = f"{request.scheme}://{request.host}"
            inputs[client_arg] = rpc.TypedData(string=durable_client(origin))
        invocation = await worker.invoke(function, inputs)
        if not invocation.succeeded:
            logger.error("Function %s failed: %s", function.name, invocation.error)
            return web.Response(status=500, text=invocation.error)
        return web.Response(status=202)

    app.router.add_post("/admin/functions/{name}", run_now)


def _match(
    routes: list[HttpRoute], method: str, path: str
) -> tuple[HttpRoute, dict[str, str]] | None:
    for route in routes:
        match = route.pattern.fullmatch(path)
        if match and (not route.methods or method in route.methods):
            return route, match.groupdict()
    return None


def to_rpc_http(
    request: web.Request, path: str, body: bytes, route_params: Mapping[str, str]
) -> rpc.RpcHttp:
    """The RpcHttp the host sends a Python worker: the URL with its query string byte for
    byte (Twilio signs exactly those bytes) but the path re-escaped, headers with lower-case
    names, repeated headers and query keys joined with commas, the body as bytes."""
    raw_query = request.raw_path.partition("?")[2]
    url = f"{request.scheme}://{request.host}{_escaped_path(path)}"
    http = rpc.RpcHttp(
        method=request.method,
        url=f"{url}?{raw_query}" if raw_query else url,
        headers=_joined([(k.lower(), v) for k, v in request.headers.items()]),
        query=_query(raw_query),
        params=dict(route_params),
    )
    http.headers["x-forwarded-for"] = _forwarded_for(request)
    if request.content_length:  # no Content-Length (chunked): the host sends no body
        http.body.bytes = body
    return http


def from_rpc_http(value: rpc.TypedData | None, name: str) -> web.Response:
    """The host's answer to what the function returned (None: an empty 200)."""
    if value is None:
        return web.Response(status=200)
    kind = value.WhichOneof("data")
    if kind == "string":
        return web.Response(status=200, text=value.string)
    if kind != "http":
        logger.error("Function %s returned %s, not an HTTP response", name, kind)
        return web.Response(status=500)
    http = value.http
    status = int(http.status_code) if http.status_code.isdecimal() else 200
    # aiohttp labels a body without Content-Type application/octet-stream (the host sends
    # none); every response of ours carries one, as func.HttpResponse always sets it.
    response = web.Response(status=status, body=_body_bytes(http.body), headers=dict(http.headers))
    for cookie in http.cookies:
        response.headers.add("Set-Cookie", _set_cookie(cookie))
    return response


def _body_bytes(body: rpc.TypedData) -> bytes:
    kind = body.WhichOneof("data")
    if kind == "bytes":
        return body.bytes
    if kind in ("string", "json"):
        return str(getattr(body, kind)).encode()
    return b""


def _set_cookie(cookie: rpc.RpcHttpCookie) -> str:
    jar: SimpleCookie = SimpleCookie()
    jar[cookie.name] = cookie.value
    morsel = jar[cookie.name]
    if cookie.HasField("path"):
        morsel["path"] = cookie.path.value
    if cookie.HasField("domain"):
        morsel["domain"] = cookie.domain.value
    if cookie.HasField("max_age"):
        morsel["max-age"] = str(int(cookie.max_age.value))
    morsel["secure"] = cookie.HasField("secure") and cookie.secure.value
    morsel["httponly"] = cookie.HasField("http_only") and cookie.http_only.value
    return morsel.OutputString()


def _headers_are_utf8(request: web.Request) -> bool:
    # aiohttp keeps undecodable bytes as surrogates; Kestrel accepts UTF-8 header values only.
    try:
        for key, value in request.headers.items():
            key.encode(), value.encode()
        request.raw_path.encode()
    except UnicodeEncodeError:
        return False
    return True


def _joined(items: list[tuple[str, str]]) -> dict[str, str]:
    # StringValues.ToString(): values joined with a bare comma, empty ones left out.
    values: dict[str, list[str]] = {}
    for key, value in items:
        values.setdefault(key, []).append(value)
    return {key: ",".join(v for v in found if v) for key, found in values.items()}


def _query(raw_query: str) -> dict[str, str]:
    """ASP.NET's Query: keys without regard to case (first spelling kept), `+` is a space,
    repeated values comma-joined; a key whose value is empty is not sent at all."""
    spelling: dict[str, str] = {}
    items = []
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        key, value = unquote(key.replace("+", " ")), unquote(value.replace("+", " "))
        items.append((spelling.setdefault(key.lower(), key), value))
    return {key: value for key, value in _joined(items).items() if value}


def _decoded_path(raw_path: str) -> str:
    # The server decodes the path but keeps %2F, so an encoded slash never splits a segment.
    path = raw_path.partition("?")[0]
    return "%2F".join(unquote(part) for part in re.split("%2[Ff]", path))


def _escaped_path(path: str) -> str:
    # PathString.ToUriComponent(): path characters and %XX triplets stay, the rest is escaped.
    return "".join(
        part if _ESCAPED.fullmatch(part) else quote(part, safe=_PATH_CHARACTERS)
        for part in _ESCAPED.split(path)
    )


def _forwarded_for(request: web.Request) -> str:
    """Append the peer as Azure's front end does (`ip:port`, `[v6]:port`) to what came in."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    hop = ""
    if peer:
        host, port = peer[0], peer[1]
        hop = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    incoming = request.headers.get("X-Forwarded-For", "")
    return ", ".join(part for part in (incoming, hop) if part)


def _durable_unavailable() -> web.Response:
    problem = {
        "type": "urn:twilio-functions:problem:needs-functions-host",
        "title": "Not available on the local host",
        "status": 501,
        "detail": "This route runs on Durable Functions, and this host was started without "
        "its Durable stand-in.",
    }
    return web.json_response(problem, status=501, content_type="application/problem+json")


def route_prefix(host_json: Path) -> str:
    config = json.loads(host_json.read_text())
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


def describe(routes: list[HttpRoute], prefix: str, base_url: str) -> Mapping[str, str]:
    return {
        r.function.name: f"{'|'.join(sorted(r.methods)) or 'ANY':<8} "
        f"{base_url}/{prefix}/{r.template} ({r.auth_level})"
        for r in routes
    }
