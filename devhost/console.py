"""The sandbox console: a page on the local host showing what the sandbox received.

Plain HTML, CSS and a little JavaScript (devhost/console/), no build step. The page polls
/sandbox/state and sends through the real /api/SendSms and /api/MakeCall, same origin.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from devhost.sandbox import SANDBOX

STATIC = Path(__file__).resolve().parent / "console"


def add_console(host: web.Application, sandbox: web.Application) -> None:
    async def state(request: web.Request) -> web.Response:
        return web.json_response(sandbox[SANDBOX].snapshot())

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def to_page(request: web.Request) -> web.Response:
        raise web.HTTPFound("/sandbox/")

    host.router.add_get("/sandbox", to_page)
    host.router.add_get("/sandbox/", page)
    host.router.add_get("/sandbox/state", state)
    host.router.add_static("/sandbox/static/", STATIC)
