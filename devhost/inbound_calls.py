"""The sandbox plays Twilio for a call *to* one of the account's numbers.

`POST /sandbox/incoming-calls` (JSON: `from`, optional `to`, optional `url`) rings the
number: the sandbox posts the signed voice webhook (InboundCalls.voice_url, or `url`)
with Twilio's parameters for an inbound call and follows the TwiML it gets, as Twilio
does: <Say>/<Play> are heard; a <Dial> rings and nobody answers (its action gets
DialCallStatus=no-answer); a <Record> "records" a voicemail (a sandbox RecordingSid, a
recording URL the sandbox serves), requests its action (the current document's URL when
it has none, as Twilio does), then posts the recording status callback; <Hangup/> or the
end of a document ends the call. A document that cannot be used ends the call with
Twilio's application-error message and a Debugger alert, as for outbound calls.
`GET /sandbox/incoming-calls` lists them (newest last) with each step; they are kept in the
sandbox's state, so `POST /sandbox/reset` forgets them with the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from devhost.phone import API_VERSION, country_of, post_webhook

if TYPE_CHECKING:
    from devhost.sandbox import _Sandbox

CALLER = "+14155550123"  # who calls when the request does not say
RECORDED_SECONDS = 5  # how long every sandbox voicemail is
# Twilio ends a call that keeps fetching documents (a <Record> without an action loops);
# the sandbox stops at this many and says so.
MAX_DOCUMENTS = 10
_RECORDING_PATH = "/2010-04-01/Accounts/{account}/Recordings/{sid}"


@dataclass
class _Run:
    call: dict[str, Any]
    params: dict[str, str]
    callbacks: list[tuple[str, dict[str, str]]] = field(default_factory=list)


class InboundCalls:
    def __init__(self, sandbox: _Sandbox) -> None:
        self.sandbox = sandbox
        self.base_url = ""  # the sandbox's own origin, for the recording URLs it makes
        self.voice_url = ""  # the number's voice webhook (devhost: the app's IncomingCall)

    @property
    def calls(self) -> dict[str, dict[str, Any]]:
        """The calls rung so far, newest last (in the sandbox's state: a reset forgets them)."""
        return self.sandbox.state.inbound_calls

    def ring(self, from_number: str, to: str | None, url: str | None) -> dict[str, Any]:
        """Start an inbound call to `to` (the account's number); ValueError if it cannot be."""
        config = self.sandbox.config
        to = to or (
            "+15005550006" if "+15005550006" in config.owned_numbers else min(config.owned_numbers)
        )
        if to not in config.owned_numbers:
            raise ValueError(f"{to} is not one of the account's numbers: Twilio would not ring it")
        voice_url = url or self.voice_url
        if not voice_url:
            raise ValueError("the number has no voice URL (InboundCalls.voice_url, or `url`)")
        sid = f"CA{uuid.uuid4().hex}"
        call: dict[str, Any] = {
            "sid": sid, "from": from_number, "to": to, "direction": "inbound",
            "status": "ringing", "voice_url": voice_url, "steps": [], "heard": [],
            "recordings": [],
        }  # fmt: skip
        params = {
            "CallSid": sid, "AccountSid": config.account_sid, "From": from_number, "To": to,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": API_VERSION,
            "Caller": from_number, "Called": to, "CallToken": "",
            "FromCountry": country_of(from_number), "FromState": "", "FromCity": "", "FromZip": "",
            "ToCountry": country_of(to), "ToState": "", "ToCity": "", "ToZip": "",
            "CallerCountry": country_of(from_number), "CallerState": "", "CallerCity": "",
            "CallerZip": "", "CalledCountry": country_of(to), "CalledState": "", "CalledCity": "",
            "CalledZip": "",
        }  # fmt: skip
        self.calls[sid] = call
        self.sandbox.state.settled[sid] = asyncio.Event()
        self.sandbox._spawn(self._run(_Run(call, params), voice_url))
        return call

    # HTTP --------------------------------------------------------------------------------

    async def handle_ring(self, request: web.Request) -> web.Response:
        self.base_url = self.base_url or str(request.url.origin())
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            body = None
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k, ""), str) for k in ("from", "to", "url")
        ):
            return web.json_response({"error": "send a JSON object of strings"}, status=400)
        try:
            call = self.ring(body.get("from") or CALLER, body.get("to"), body.get("url"))
        except ValueError as refused:
            return web.json_response({"error": str(refused)}, status=400)
        return web.json_response(call, status=201)

    async def handle_list(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": list(self.calls.values())})

    async def handle_show(self, request: web.Request) -> web.Response:
        """One call; `?wait=N` waits up to N seconds until it has ended."""
        sid = request.match_info["sid"]
        if sid not in self.calls:
            return web.json_response({"error": "not found"}, status=404)
        wait = min(float(request.query.get("wait", "0") or 0), 30.0)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.sandbox.state.settled[sid].wait(), wait)
        return web.json_response(self.calls[sid])

    async def handle_recording(self, request: web.Request) -> web.Response:
        """A recording's audio, as Twilio serves RecordingUrl (.wav or no extension)."""
        sid = request.match_info["sid"].removesuffix(".wav")
        known = any(r["sid"] == sid for c in self.calls.values() for r in c["recordings"])
        if request.match_info["account"] != self.sandbox.config.account_sid or not known:
            return web.json_response({"code": 20404, "status": 404}, status=404)
        return web.Response(body=_silence(RECORDED_SECONDS), content_type="audio/x-wav")

    # The call ----------------------------------------------------------------------------

    async def _run(self, run: _Run, url: str) -> None:
        call = run.call
        request: tuple[str, dict[str, str]] | None = (url, {})
        try:
            for _ in range(MAX_DOCUMENTS):
                if request is None:
                    break
                document_url, extra = request
                verbs = await self._document(run, document_url, extra)
                call["status"] = "in-progress"
                run.params["CallStatus"] = "in-progress"
                request = await self._follow(run, document_url, verbs)
            else:
                self._step(call, "stopped", f"more than {MAX_DOCUMENTS} TwiML documents")
            for callback_url, params in run.callbacks:  # once the recording is processed
                answer = await post_webhook(callback_url, params, self.sandbox.config.auth_token)
                self._step(call, "recording callback", callback_url, answer.outcome)
        except _Unusable as failure:
            call["heard"].append({"verb": "Say", "text": failure.heard})
        finally:
            call["status"] = "completed"
            self.sandbox.state.settled[call["sid"]].set()

    async def _document(self, run: _Run, url: str, extra: dict[str, str]) -> list[ET.Element]:
        if not self.sandbox._may_reach(url):
            self._step(run.call, "webhook", url, "not reached: loopback only")
            raise _Unusable(self._alert(run.call, url, 11200, f"Could not reach {url}"))
        answer = await post_webhook(url, {**run.params, **extra}, self.sandbox.config.auth_token)
        self._step(run.call, "webhook", url, answer.outcome, body=answer.body[:4000])
        if answer.status != 200:
            raise _Unusable(self._alert(run.call, url, 11200, f"{url} answered {answer.outcome}"))
        if answer.content_type.split(";")[0].strip() not in {"application/xml", "text/xml"}:
            raise _Unusable(self._alert(run.call, url, 12300, "Invalid Content-Type"))
        try:
            root = ET.fromstring(answer.body)
        except ET.ParseError:
            raise _Unusable(self._alert(run.call, url, 12100, "Document parse failure")) from None
        if root.tag != "Response":
            raise _Unusable(self._alert(run.call, url, 12102, "The root element must be Response"))
        return list(root)

    async def _follow(
        self, run: _Run, url: str, verbs: list[ET.Element]
    ) -> tuple[str, dict[str, str]] | None:
        """Carry out a document's verbs; the next request to make, or None: the call ends."""
        call = run.call
        for verb in verbs:
            if verb.tag == "Say":
                call["heard"].append({"verb": "Say", "text": verb.text or "", **verb.attrib})
            elif verb.tag == "Play":
                call["heard"].append({"verb": "Play", "url": (verb.text or "").strip()})
            elif verb.tag == "Dial":
                number = (verb.text or "").strip()
                self._step(call, "dial", number, "no-answer")  # the forward rings out
                if "action" in verb.attrib:
                    status = {"DialCallStatus": "no-answer", "DialCallDuration": "0"}
                    return verb.attrib["action"], status
            elif verb.tag == "Record":
                return self._record(run, url, verb)
            elif verb.tag == "Hangup":
                self._step(call, "hangup", "")
                return None
            else:
                call["heard"].append({"verb": verb.tag, **verb.attrib})
        return None

    def _record(self, run: _Run, url: str, verb: ET.Element) -> tuple[str, dict[str, str]]:
        call, config = run.call, self.sandbox.config
        sid = f"RE{uuid.uuid4().hex}"
        path = _RECORDING_PATH.format(account=config.account_sid, sid=sid)
        recording_url = f"{self.base_url}{path}"
        call["recordings"].append({"sid": sid, "url": recording_url, "duration": RECORDED_SECONDS})
        call["heard"].append({"verb": "Record", **verb.attrib})
        self._step(call, "record", sid, f"{RECORDED_SECONDS} s")
        callback = verb.attrib.get("recordingStatusCallback")
        if callback:
            run.callbacks.append((callback, {
                "AccountSid": config.account_sid, "CallSid": call["sid"], "RecordingSid": sid,
                "RecordingUrl": recording_url, "RecordingStatus": "completed",
                "RecordingDuration": str(RECORDED_SECONDS), "RecordingChannels": "1",
                "RecordingSource": "RecordVerb", "RecordingStartTime": "",
            }))  # fmt: skip
        result = {
            "RecordingUrl": recording_url, "RecordingDuration": str(RECORDED_SECONDS),
            "RecordingSid": sid, "Digits": "hangup",
        }  # fmt: skip
        # No action: Twilio requests the current document again.
        return verb.attrib.get("action", url), result

    def _step(
        self, call: dict[str, Any], step: str, target: str, outcome: Any = "", **more: Any
    ) -> None:
        call["steps"].append({"step": step, "target": target, "outcome": outcome, **more})

    def _alert(self, call: dict[str, Any], url: str, code: int, text: str) -> str:
        from devhost.sandbox import APPLICATION_ERROR

        self.sandbox.state.alerts.append(
            {"error_code": str(code), "alert_text": text, "request_url": url,
             "resource_sid": call["sid"], "log_level": "error"}
        )  # fmt: skip
        return APPLICATION_ERROR


class _Unusable(Exception):
    def __init__(self, heard: str) -> None:
        super().__init__(heard)
        self.heard = heard


def _silence(seconds: int) -> bytes:
    """A WAV of silence: 8 kHz mono, 16-bit, as a phone recording would be."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 8000 * seconds)
    return buffer.getvalue()


INBOUND: web.AppKey[InboundCalls] = web.AppKey("inbound_calls")


def add_inbound_calls(app: web.Application, sandbox: _Sandbox) -> InboundCalls:
    inbound = InboundCalls(sandbox)
    app[INBOUND] = inbound
    app.router.add_post("/sandbox/incoming-calls", inbound.handle_ring)
    app.router.add_get("/sandbox/incoming-calls", inbound.handle_list)
    app.router.add_get("/sandbox/incoming-calls/{sid}", inbound.handle_show)
    app.router.add_get(
        _RECORDING_PATH.format(account="{account}", sid="{sid}"), inbound.handle_recording
    )
    return inbound
