"""The sandbox console: a page on the local host showing what the sandbox received.

Plain HTML, CSS and a little JavaScript (devhost/console/), no build step. The page polls
/sandbox/state and sends through the real /api/SendSms and /api/MakeCall, same origin.
Broadcasts: /sandbox/broadcasts lists their ids from the Durable stand-in; the page reads
each one's progress, and cancels it, through the app's own /api/broadcasts/{id}, so it
sees exactly what its caller (this machine) may see.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from devhost.durable.standin import DurableStandIn
from devhost.sandbox import SANDBOX
from shared.broadcast_orchestration import BROADCAST_ORCHESTRATOR

STATIC = Path(__file__).resolve().parent / "console"


SHOWN_BROADCASTS = 20


def add_console(
    host: web.Application, sandbox: web.Application, durable: DurableStandIn | None = None
) -> None:
    async def state(request: web.Request) -> web.Response:
        return web.json_response(sandbox[SANDBOX].snapshot())

    async def broadcasts(request: web.Request) -> web.Response:
        found = await durable.named(BROADCAST_ORCHESTRATOR) if durable else []
        return web.json_response({"broadcasts": found[:SHOWN_BROADCASTS]})

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def to_page(request: web.Request) -> web.Response:
        raise web.HTTPFound("/sandbox/")

    host.router.add_get("/sandbox", to_page)
    host.router.add_get("/sandbox/", page)
    host.router.add_get("/sandbox/state", state)
    host.router.add_get("/sandbox/broadcasts", broadcasts)
    host.router.add_static("/sandbox/static/", STATIC)
