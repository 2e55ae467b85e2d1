"""Serve a real azure.functions FunctionApp over HTTP, the way the Functions host does.

Every HTTP-triggered function is mounted at `/{routePrefix}/{route}` with its methods
(others get the host's bare 404), sync handlers run on a thread pool like the Python
worker's, async ones on the loop, and an exception becomes the host's empty 500.
Auth levels are shown but not enforced, as with `func start`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web

logger = logging.getLogger(__name__)

_ROUTE_PARAMETER = re.compile(r"\{(\w+)(?::[^}?]+)?(\?)?\}")


@dataclass(frozen=True)
class HttpFunction:
    name: str
    route: str
    methods: tuple[str, ...]  # empty: every method
    auth_level: str
    trigger_arg: str
    user_function: Callable[..., Any]
    needs_durable: bool = False  # takes a Durable client, which only the real host provides


def route_prefix(host_json: Path) -> str:
    config = json.loads(host_json.read_text())
    prefix = config.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


def http_functions(app: func.FunctionApp, indexed: list[Any]) -> list[HttpFunction]:
    """The HTTP functions among `indexed` (app.get_functions() may be called only once)."""
    found = []
    for function in indexed:
        trigger = function.get_trigger()
        if not isinstance(trigger, func.decorators.http.HttpTrigger):
            continue
        name = function.get_function_name() or "function"
        found.append(
            HttpFunction(
                name=name,
                route=trigger.route or name,
                methods=tuple(_method_name(m) for m in trigger.methods or ()),
                auth_level=_method_name(trigger.auth_level or app.auth_level).lower(),
                trigger_arg=trigger.name,
                user_function=function.get_user_function(),
                needs_durable=any(b.type == "durableClient" for b in function.get_bindings()),
            )
        )
    return found


def create_host_app(
    functions: list[HttpFunction], prefix: str, executor: ThreadPoolExecutor
) -> web.Application:
    app = web.Application(client_max_size=100 * 1024 * 1024)  # the host's 100 MB limit
    for function in functions:
        path = (
            f"/{prefix}/{_aiohttp_route(function.route)}"
            if prefix
            else f"/{_aiohttp_route(function.route)}"
        )
        app.router.add_route("*", path, functools.partial(_invoke, function, executor))
    return app


async def _invoke(
    function: HttpFunction, executor: ThreadPoolExecutor, request: web.Request
) -> web.StreamResponse:
    if function.methods and request.method not in function.methods:
        return web.Response(status=404)
    if function.needs_durable:
        return _durable_unavailable()
    req = await to_functions_request(request)
    call = functools.partial(function.user_function, **{function.trigger_arg: req})
    try:
        if inspect.iscoroutinefunction(function.user_function):
            result = await call()
        else:
            result = await asyncio.get_running_loop().run_in_executor(executor, call)
    except Exception:
        logger.exception("Function %s raised", function.name)
        return web.Response(status=500)
    return to_aiohttp_response(result)


async def to_functions_request(request: web.Request) -> func.HttpRequest:
    body = await request.read()
    # raw_path keeps the query byte for byte, as the host hands it to the worker:
    # Twilio signatures are computed over exactly those bytes.
    url = f"{request.scheme}://{request.host}{request.raw_path}"
    headers = dict(request.headers)
    headers["X-Forwarded-For"] = _forwarded_for(request)
    return func.HttpRequest(
        method=request.method,
        url=url,
        headers=headers,
        params={key: value for key, value in request.query.items()},  # last one wins
        route_params=dict(request.match_info),
        body=body,
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


def to_aiohttp_response(result: Any) -> web.Response:
    if not isinstance(result, func.HttpResponse):
        logger.error("Function returned %s, not an HttpResponse", type(result).__name__)
        return web.Response(status=500)
    headers: dict[str, str] = dict(result.headers.items())
    if not any(key.lower() == "content-type" for key in headers):
        mimetype = result.mimetype
        charset = (
            f"; charset={result.charset}"
            if mimetype.startswith("text/") or mimetype.endswith(("json", "xml"))
            else ""
        )
        headers["Content-Type"] = f"{mimetype}{charset}"
    return web.Response(status=result.status_code, body=result.get_body(), headers=headers)


def _durable_unavailable() -> web.Response:
    problem = {
        "type": "urn:twilio-functions:problem:needs-functions-host",
        "title": "Not available on the local host",
        "status": 501,
        "detail": "This route runs on Durable Functions, which needs the Functions host: "
        "run `func start` with Azurite and AzureWebJobsStorage=UseDevelopmentStorage=true.",
    }
    return web.json_response(problem, status=501, content_type="application/problem+json")


def non_http_functions(indexed: list[Any]) -> list[str]:
    """Names of functions the local host cannot run (orchestrators, activities, …)."""
    return [f.get_function_name() for f in indexed if not f.is_http_function()]


def _aiohttp_route(route: str) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(2):
            raise ValueError(f"optional route parameters are not supported: {route}")
        return "{" + match.group(1) + "}"

    return _ROUTE_PARAMETER.sub(replace, route.strip("/"))


def _method_name(value: Any) -> str:
    return str(getattr(value, "value", value)).upper()


def describe(functions: list[HttpFunction], prefix: str, base_url: str) -> Mapping[str, str]:
    return {
        f.name: f"{'|'.join(f.methods) or 'ANY':<8} {base_url}/{prefix}/{f.route} ({f.auth_level})"
        for f in functions
    }
