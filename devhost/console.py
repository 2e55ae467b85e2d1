"""The sandbox console: a page on the local host showing what the sandbox received.

Plain HTML, CSS and a little JavaScript (devhost/console/), no build step. The page polls
/sandbox/state and sends through the real /api/SendSms and /api/MakeCall, same origin.
Broadcasts: /sandbox/broadcasts lists their ids from the Durable stand-in; the page reads
each one's progress, and cancels it, through the app's own /api/broadcasts/{id}, so it
sees exactly what its caller (this machine) may see. Inbound calls: POST
/sandbox/incoming-calls rings the app's number through the sandbox (devhost/inbound_calls.py);
GET lists those calls and the voicemails the app stored (/sandbox/voicemails: those only).
Conversations: POST /sandbox/reply
{phone, body} has the phone text back; the sandbox posts the signed webhook Twilio would
to the app's IncomingSms (devhost/texting.py).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from devhost.durable.standin import DurableStandIn
from devhost.inbound_calls import INBOUND
from devhost.sandbox import SANDBOX
from shared.broadcast_orchestration import BROADCAST_ORCHESTRATOR

STATIC = Path(__file__).resolve().parent / "console"


SHOWN_BROADCASTS = 20
SHOWN_VOICEMAILS = 20
MAX_REPLY = 1600  # what Twilio delivers of one text
_PHONE = re.compile(r"\+[1-9][0-9]{1,14}")


def add_console(
    host: web.Application, sandbox: web.Application, durable: DurableStandIn | None = None
) -> None:
    async def state(request: web.Request) -> web.Response:
        return web.json_response(sandbox[SANDBOX].snapshot())

    async def broadcasts(request: web.Request) -> web.Response:
        found = await durable.named(BROADCAST_ORCHESTRATOR) if durable else []
        return web.json_response({"broadcasts": found[:SHOWN_BROADCASTS]})

    async def ring(request: web.Request) -> web.Response:
        return await sandbox[INBOUND].handle_ring(request)

    async def inbound_calls(request: web.Request) -> web.Response:
        calls = list(sandbox[INBOUND].calls.values())
        return web.json_response({"calls": calls, "voicemails": await _voicemails()})

    async def voicemails(request: web.Request) -> web.Response:
        return web.json_response({"voicemails": await _voicemails()})

    async def reply(request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
        phone, body = payload.get("phone"), payload.get("body")
        if not (isinstance(phone, str) and _PHONE.fullmatch(phone)):
            return web.json_response(
                {"error": "phone must be E.164, e.g. +14155550100"}, status=400
            )
        if not (isinstance(body, str) and 0 < len(body) <= MAX_REPLY):
            return web.json_response({"error": f"body: 1 to {MAX_REPLY} characters"}, status=400)
        message = await sandbox[SANDBOX].receive_sms(phone, body)
        return web.json_response(message, status=201)

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def to_page(request: web.Request) -> web.Response:
        raise web.HTTPFound("/sandbox/")

    host.router.add_get("/sandbox", to_page)
    host.router.add_get("/sandbox/", page)
    host.router.add_get("/sandbox/state", state)
    host.router.add_get("/sandbox/broadcasts", broadcasts)
    host.router.add_post("/sandbox/incoming-calls", ring)
    host.router.add_get("/sandbox/incoming-calls", inbound_calls)
    host.router.add_get("/sandbox/voicemails", voicemails)
    host.router.add_post("/sandbox/reply", reply)
    host.router.add_static("/sandbox/static/", STATIC)


async def _voicemails() -> list[dict[str, Any]]:
    """What the app stored, read from its own store: voicemails have no app route (no
    caller owns them, docs/two-way.md), so the console reads them as an operator would."""
    from shared.settings import get_settings
    from shared.state import get_store

    found = await asyncio.to_thread(lambda: get_store(get_settings()).voicemails(SHOWN_VOICEMAILS))
    return [asdict(voicemail) for voicemail in found]
