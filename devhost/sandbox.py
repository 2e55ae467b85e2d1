"""A local stand-in for the parts of Twilio's REST API this app uses.

The unchanged twilio library reaches it through TWILIO_API_BASE_URL. It checks HTTP
basic auth, answers with Twilio's JSON shapes and error bodies, honours Twilio's
test-credential magic numbers, and for a created call does what Twilio does: fetches
the call's TwiML URL with Twilio's parameters and a valid X-Twilio-Signature, checks
the answer, and records what the callee would have heard.

It refuses what Twilio refuses: a `From` the account does not own (21606 for messages,
21210 for calls), a Messaging Service it does not own (21701) or whose SID is malformed
(21705). `SandboxConfig` says what the account owns; by default only +15005550006, the
one sender Twilio's test credentials accept.

It is silent where Twilio is silent. Unlike Twilio's test credentials it posts signed
status callbacks, but none for a message's initial status: a message goes queued → sent →
delivered (through a Messaging Service accepted → queued → sent → delivered) with
callbacks from the second status on. Calls post only the events asked for in
StatusCallbackEvent (default: completed), `answered` with CallStatus in-progress. A call
whose TwiML cannot be fetched or read was answered already: the callee hears Twilio's
application-error message, the call completes, and the error (11200, 12100, 12102, 12300)
becomes a Debugger alert (`GET /sandbox/alerts`), not the call's status. It only reaches
loopback hosts (TwiML, callbacks) unless `reach_internet`. `GET
/sandbox/messages/{sid}?wait=N` (and calls) waits until every callback of that SID has
been answered, so tests need not poll.

The phone can text back (`receive_sms`, devhost/texting.py): Twilio's own opt-out handling
(after STOP, sends from that sender to that phone are refused with 21610), the inbound
Message, the signed webhook to `incoming_sms_url`, and the replies.

Messages and calls are listed as Twilio lists them (`GET …/Messages.json`,
`GET …/Calls.json`: filters, paging, newest first; see devhost.twilio_lists): after a lost
answer, a lookup is the only way to learn whether a message or call exists.

Sandbox-only magic numbers (not Twilio's) make failures reproducible: +15005550428 is
rate limited (429) on the first try of each body, +15005550429 always, +15005550500 gets
a Twilio 500 and nothing is created, +15005550504 is answered only after `slow_seconds`
(and created then). Lost answers, for messages and calls alike: +15005550501 is created,
then answered 500; +15005550502 is created, then its connection is reset before any
answer. SMS to +15005550303 end undelivered (30003), to +15005550308 failed (30008).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import re
import socket
import struct
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator
from yarl import URL

from devhost import texting
from devhost.phone import TWILIO_TIMEOUT_SECONDS, post_webhook
from devhost.twilio_lists import (
    CALL_DATES,
    MESSAGE_DATES,
    DateFilter,
    InvalidListQuery,
    list_page,
    newest_first,
    parse_query,
)

logger = logging.getLogger(__name__)

API = "/2010-04-01/Accounts/{account}"
NOT_REACHED = (
    "not sent: the sandbox only reaches 127.0.0.1 (.venv/bin/python -m devhost --sandbox-internet)"
)
TEST_SENDER = "+15005550006"  # the one From Twilio's test credentials accept
# What a caller hears when Twilio cannot use the TwiML (twilio-ruby#50; Twilio's
# availability-reliability docs: "the default application error message").
APPLICATION_ERROR = "We're sorry, but an application error has occurred. Goodbye!"
# The spec's MessagingServiceSid pattern (CreateMessage).
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")

# To-number magic for Messages and Calls: (status, code, message)
_MESSAGE_TO_ERRORS = {
    "+15005550001": (400, 21211, "The 'To' number {to} is not a valid phone number."),
    "+15005550002": (400, 21612, "The 'To' phone number: {to}, is not currently reachable."),
    "+15005550003": (400, 21408, "Permission to send an SMS has not been enabled for the region."),
    "+15005550004": (400, 21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (400, 21614, "'To' number is not a valid mobile number"),
}
# Twilio's wording, as its API returns it (twilio-php#638, twilio-node#528).
_SMS_SENDER_NOT_OWNED = (
    "The From phone number {from_} is not a valid, SMS-capable inbound phone number or short "
    "code for your account."
)
# Twilio's wording (quoted in lesleyornelas/Twilio-#34).
_CALLER_NOT_OWNED = (
    "The source phone number provided, {from_}, is not yet verified for your account. You may "
    "only make calls from phone numbers that you've verified or purchased from Twilio."
)
_MESSAGE_FROM_ERRORS = {
    "+15005550001": (400, 21212, "The 'From' number {from_} is not a valid phone number."),
    "+15005550007": (400, 21606, _SMS_SENDER_NOT_OWNED),
    # 21611 comes with HTTP 429, not 400 (scottswezey/twilio_magic_values messaging_test.exs,
    # run against Twilio's test credentials).
    "+15005550008": (
        429,
        21611,
        "This 'From' number has exceeded the maximum number of queued messages.",
    ),
}
_CALL_TO_ERRORS = {
    "+15005550001": (400, 21217, "Phone number {to} does not appear to be valid."),
    "+15005550002": (400, 21214, "'To' phone number cannot be reached."),
    "+15005550003": (400, 21215, "Account not authorized to call {to}."),
    "+15005550004": (400, 21216, "Account not allowed to call {to}."),
}
_CALL_FROM_ERRORS = {
    "+15005550001": (400, 21212, "The 'From' number {from_} is not a valid phone number."),
}
# Sandbox-only: accepted, then fail on the way to the handset (seen in status callbacks).
_MESSAGE_OUTCOMES = {
    "+15005550303": ("undelivered", 30003, "Unreachable destination handset"),
    "+15005550308": ("failed", 30008, "Unknown error"),
}
# Twilio's magic senders: From numbers whose answer is an error (never owned by an account).
MAGIC_SENDERS = frozenset(_MESSAGE_FROM_ERRORS) | frozenset(_CALL_FROM_ERRORS)
RATE_LIMITED_ONCE = "+15005550428"
RATE_LIMITED = "+15005550429"
SERVER_ERROR = "+15005550500"
CREATED_THEN_500 = "+15005550501"
CREATED_THEN_RESET = "+15005550502"
SLOW = "+15005550504"

_GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")
# The Call resource's status enum (spec: call_enum_status), which the Status filter takes.
_CALL_STATUSES = frozenset(
    {"queued", "ringing", "in-progress", "canceled", "completed", "failed", "busy", "no-answer"}
)


def segments(body: str) -> int:
    """Twilio's segment count: GSM-7 160/153 per segment, otherwise UCS-2 70/67."""
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in body):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in body)
        single, multi = 160, 153
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in body)
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def may_reach(url: str, *, internet: bool = False) -> bool:
    """Whether the sandbox may send to `url`: loopback only, unless `internet`.

    The host is parsed, never prefix-matched: `127.attacker.example` is a public name.
    """
    if internet:
        return True
    host = (URL(url, encoded=True).host or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False


@dataclass
class SandboxConfig:
    account_sid: str
    auth_token: str
    api_keys: dict[str, str] = field(default_factory=dict)
    slow_seconds: float = 5.0
    # Off by default so tests and CI never send traffic beyond this machine.
    reach_internet: bool = False
    # The numbers and Messaging Services the account owns; any other sender is refused.
    owned_numbers: frozenset[str] = frozenset({TEST_SENDER})
    messaging_services: frozenset[str] = frozenset()
    # The number a Messaging Service picks from its sender pool (one pool for all).
    service_sender: str = TEST_SENDER
    # Where the account's numbers post incoming messages ("A message comes in"); devhost
    # sets it to the app's IncomingSms once the app listens. Empty: nowhere.
    incoming_sms_url: str = ""


@dataclass
class SandboxState:
    """Everything the sandbox holds: a reset replaces it whole."""

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Calls *to* the account's numbers (devhost/inbound_calls.py); their `settled` events
    # are kept with the others' (call SIDs are unique).
    inbound_calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    settled: dict[str, asyncio.Event] = field(default_factory=dict)
    rate_limited_once: set[tuple[str, str]] = field(default_factory=set)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # Twilio's own opt-out list: (phone, sender key) pairs that replied STOP.
    opted_out: set[tuple[str, str]] = field(default_factory=set)


class TwilioError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        body = {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if self.status == 401 else {}
        return web.json_response(body, status=self.status, headers=headers)


class _ApplicationError(Exception):
    """The call's TwiML could not be used: a Debugger alert, not a failed call."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text


SANDBOX: web.AppKey[_Sandbox] = web.AppKey("sandbox")


def create_sandbox_app(config: SandboxConfig) -> web.Application:
    sandbox = _Sandbox(config)
    app = web.Application()
    app[SANDBOX] = sandbox
    app.router.add_post(f"{API}/Messages.json", sandbox.create_message)
    app.router.add_get(f"{API}/Messages.json", sandbox.read_messages)
    app.router.add_get(f"{API}/Messages/{{sid}}.json", sandbox.fetch_message)
    app.router.add_post(f"{API}/Calls.json", sandbox.create_call)
    app.router.add_get(f"{API}/Calls.json", sandbox.read_calls)
    app.router.add_get(f"{API}/Calls/{{sid}}.json", sandbox.fetch_call)
    app.router.add_get("/sandbox/messages", sandbox.list_messages)
    app.router.add_get("/sandbox/calls", sandbox.list_calls)
    app.router.add_get("/sandbox/messages/{sid}", sandbox.show_message)
    app.router.add_get("/sandbox/calls/{sid}", sandbox.show_call)
    app.router.add_get("/sandbox/alerts", sandbox.list_alerts)
    app.router.add_get("/sandbox/requests", sandbox.list_requests)
    app.router.add_post("/sandbox/reset", sandbox.reset)
    from devhost.inbound_calls import add_inbound_calls  # it builds on this module

    add_inbound_calls(app, sandbox)  # calls *to* the account's numbers
    app.on_cleanup.append(sandbox.close)
    return app


class _Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.state = SandboxState()
        self.validator = RequestValidator(config.auth_token)

    # REST API -------------------------------------------------------------------------

    async def create_message(self, request: web.Request) -> web.Response:
        try:
            form = await self._authorized_form(request, "Messages")
            self._check_message(form)
            await self._transport_magic(form["To"], form.get("Body", ""))
        except TwilioError as error:
            return error.response()
        message = self._new_message(form)
        self.state.messages[message["sid"]] = message
        self.state.settled[message["sid"]] = asyncio.Event()
        self._spawn(self._deliver_message(message["sid"], form.get("StatusCallback", "")))
        return _answer_created(request, message)

    async def read_messages(self, request: web.Request) -> web.Response:
        equal = {"To": "to", "From": "from"}
        return await self._read(request, "Messages", self.state.messages, equal, MESSAGE_DATES)

    async def fetch_message(self, request: web.Request) -> web.Response:
        return await self._fetch(request, "Messages", self.state.messages)

    async def create_call(self, request: web.Request) -> web.Response:
        try:
            form = await self._authorized_form(request, "Calls")
            self._check_call(form)
            await self._transport_magic(form["To"], form.get("Url") or form.get("Twiml", ""))
        except TwilioError as error:
            return error.response()
        call = self._new_call(form)
        self.state.calls[call["sid"]] = call
        self.state.settled[call["sid"]] = asyncio.Event()
        # twilio-python repeats the parameter; Twilio also takes one space-separated value.
        events = {e for value in form.getall("StatusCallbackEvent", []) for e in value.split()}
        # Only the events asked for; none asked for means `completed` only (spec).
        callback = _Callback(form.get("StatusCallback", ""), events or {"completed"})
        url, method = form.get("Url", ""), form.get("Method", "POST").upper()
        # "If both twiml and url are provided then twiml parameter will be ignored" (spec).
        inline = "" if url else form.get("Twiml", "")
        self._spawn(self._run_call(call["sid"], url, method, inline, callback))
        return _answer_created(request, call)

    async def read_calls(self, request: web.Request) -> web.Response:
        equal = {"To": "to", "From": "from", "Status": "status"}
        return await self._read(
            request, "Calls", self.state.calls, equal, CALL_DATES, {"Status": _CALL_STATUSES}
        )

    async def fetch_call(self, request: web.Request) -> web.Response:
        return await self._fetch(request, "Calls", self.state.calls)

    # What a developer (or a test) can look at -----------------------------------------

    async def list_messages(self, request: web.Request) -> web.Response:
        return web.json_response({"messages": list(self.state.messages.values())})

    async def list_calls(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": list(self.state.calls.values())})

    async def list_alerts(self, request: web.Request) -> web.Response:
        """What Twilio's Debugger would show (Monitor API Alert fields), oldest first."""
        return web.json_response({"alerts": self.state.alerts})

    async def show_message(self, request: web.Request) -> web.Response:
        return await self._show(request, self.state.messages)

    async def show_call(self, request: web.Request) -> web.Response:
        return await self._show(request, self.state.calls)

    async def _show(self, request: web.Request, store: dict[str, dict[str, Any]]) -> web.Response:
        """One resource; `?wait=N` waits up to N seconds until its callbacks are all answered."""
        sid = request.match_info["sid"]
        if sid not in store:
            return web.json_response({"error": "not found"}, status=404)
        wait = min(float(request.query.get("wait", "0") or 0), 30.0)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.state.settled[sid].wait(), wait)
        return web.json_response(store[sid])

    async def receive_sms(self, phone: str, body: str) -> dict[str, Any]:
        """`phone` texts back, to the sender that last texted it: Twilio's opt-out handling,
        the Message resource, the signed webhook to `incoming_sms_url`, and the replies."""
        account = self.config.account_sid
        line = texting.line_to(list(self.state.messages.values()), phone, TEST_SENDER)
        message = texting.inbound_message(account, f"SM{uuid.uuid4().hex}", phone, line, body)
        self.state.messages[message["sid"]] = message
        keyword = texting.twilio_keyword(body)
        if keyword == "STOP":
            self.state.opted_out.add((phone, line.key))
        elif keyword == "START":
            self.state.opted_out.discard((phone, line.key))
        replies = [texting.TWILIO_REPLIES[keyword]] if keyword else []
        url = self.config.incoming_sms_url
        if url and self._may_reach(url):
            answer = await texting.deliver(url, self.config.auth_token, message)
            message["webhook"] = {"url": url, "response": answer.outcome, "body": answer.body}
            # Twilio answers a keyword itself; the app's TwiML for it is not sent.
            replies += [] if keyword else texting.twiml_messages(answer)
        else:
            message["webhook"] = {"url": url, "response": NOT_REACHED if url else "no webhook"}
        for text in replies:
            reply = texting.reply_message(account, line, phone, text)
            self.state.messages[reply["sid"]] = reply
        return message

    def snapshot(self) -> dict[str, Any]:
        """Everything received so far (for the console)."""
        return {
            "messages": list(self.state.messages.values()),
            "calls": list(self.state.calls.values()),
            "alerts": self.state.alerts,
        }

    async def list_requests(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": self.state.requests})

    async def reset(self, request: web.Request) -> web.Response:
        await self.close()
        self.state = SandboxState()
        return web.json_response({"reset": True})

    async def close(self, app: web.Application | None = None) -> None:
        for task in list(self.state.tasks):
            task.cancel()
        await asyncio.gather(*self.state.tasks, return_exceptions=True)

    # Validation -------------------------------------------------------------------------

    def _check_message(self, form: Any) -> None:
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        service = form.get("MessagingServiceSid", "")
        if not to:
            raise TwilioError(400, 21604, "A 'To' phone number is required.")
        if not (from_ or service):
            raise TwilioError(400, 21603, "A 'From' phone number is required.")
        if not (body or form.getall("MediaUrl", [])):
            raise TwilioError(400, 21602, "Message body is required.")
        if len(body) > 1600:
            raise TwilioError(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        if service:
            self._check_service(service)
        if from_:
            _raise_magic(_MESSAGE_FROM_ERRORS, from_, to, from_)
            if from_ not in self.config.owned_numbers:
                raise TwilioError(400, 21606, _SMS_SENDER_NOT_OWNED.format(from_=from_))
        _raise_magic(_MESSAGE_TO_ERRORS, to, to, from_)
        if {(to, service), (to, from_)} & self.state.opted_out:
            raise TwilioError(400, 21610, "Attempt to send to unsubscribed recipient")

    def _check_service(self, service: str) -> None:
        # Codes from Twilio's error dictionary: 21705 "The Messaging Service is invalid" (does
        # not match MG + 32 hex, twilio.com/docs/api/errors/21705) and 21701 "The Messaging
        # Service does not exist" (or is another account's, /docs/api/errors/21701). Their
        # HTTP status is not documented: 400, as for every other refused create here.
        if not _SERVICE_SID.fullmatch(service):
            raise TwilioError(400, 21705, f"The Messaging Service Sid {service} is invalid.")
        if service not in self.config.messaging_services:
            raise TwilioError(400, 21701, f"The Messaging Service Sid {service} does not exist.")

    def _check_call(self, form: Any) -> None:
        to, from_ = form.get("To", ""), form.get("From", "")
        if not to:
            raise TwilioError(400, 21201, "No 'To' number is specified")
        if not from_:
            raise TwilioError(400, 21213, "No 'From' number is specified")
        if not (form.get("Url") or form.get("Twiml")):
            raise TwilioError(400, 21205, "Url parameter is required.")
        _raise_magic(_CALL_FROM_ERRORS, from_, to, from_)
        if from_ not in self.config.owned_numbers:
            raise TwilioError(400, 21210, _CALLER_NOT_OWNED.format(from_=from_))
        _raise_magic(_CALL_TO_ERRORS, to, to, from_)

    # Resources --------------------------------------------------------------------------

    def _new_message(self, form: Any) -> dict[str, Any]:
        sid, now, account = f"SM{uuid.uuid4().hex}", _rfc2822(), self.config.account_sid
        body, media = form.get("Body", ""), form.getall("MediaUrl", [])
        service = form.get("MessagingServiceSid", "")
        return {
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From") or None,
            "messaging_service_sid": service or None,
            "num_media": str(len(media)),
            # "When using a Messaging Service to send messages, num_segments will always be 0
            # in Twilio's response to your API request" (Message resource docs; the spec's
            # createWithMessagingService example says "1": the docs win).
            "num_segments": "0" if service else _segment_count(body),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            # A Messaging Service send starts `accepted` (docs: outbound message status in
            # status callbacks; the spec's example says `queued`: the docs win).
            "status": "accepted" if service else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"
            },
            "to": form["To"],
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            "media_url": media,
        }

    def _new_call(self, form: Any) -> dict[str, Any]:
        sid, now, account = f"CA{uuid.uuid4().hex}", _rfc2822(), self.config.account_sid
        return {
            "account_sid": account,
            "answered_by": None,
            "api_version": "2010-04-01",
            "caller_name": None,
            "date_created": now,
            "date_updated": now,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "from": form["From"],
            "from_formatted": form["From"],
            "parent_call_sid": None,
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "subresource_uris": {},
            "to": form["To"],
            "to_formatted": form["To"],
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
            "twiml_request": None,
            "heard": [],
        }

    # Internals ------------------------------------------------------------------------

    def _may_reach(self, url: str) -> bool:
        return may_reach(url, internet=self.config.reach_internet)

    async def _authorized_form(self, request: web.Request, resource: str) -> Any:
        form = await request.post()
        self.state.requests.append(
            {"method": request.method, "resource": resource, "to": form.get("To")}
        )
        self._authorize(request)
        return form

    def _authorize(self, request: web.Request) -> None:
        if request.match_info["account"] != self.config.account_sid:
            raise TwilioError(404, 20404, "The requested resource was not found")
        if not self._credentials_ok(request):
            raise TwilioError(401, 20003, "Authenticate")

    async def _fetch(
        self, request: web.Request, resource: str, store: dict[str, dict[str, Any]]
    ) -> web.Response:
        self.state.requests.append({"method": "GET", "resource": resource, "to": None})
        try:
            self._authorize(request)
            sid = request.match_info["sid"]
            if sid not in store:
                raise TwilioError(
                    404, 20404, f"The requested resource {request.path} was not found"
                )
        except TwilioError as error:
            return error.response()
        return web.json_response(_public(store[sid]))

    async def _read(
        self,
        request: web.Request,
        resource: str,
        store: dict[str, dict[str, Any]],
        equal: Mapping[str, str],
        dates: DateFilter,
        choices: Mapping[str, frozenset[str]] | None = None,
    ) -> web.Response:
        """A list page as Twilio's list endpoints answer it (devhost.twilio_lists)."""
        self.state.requests.append(
            {"method": "GET", "resource": resource, "to": request.query.get("To")}
        )
        key = resource.lower()
        try:
            self._authorize(request)
            query = parse_query(request.query, equal, dates, choices)
            records = newest_first(list(store.values()), dates.field)
            page = list_page(records, query, request.path, key)
        except TwilioError as error:
            return error.response()
        except InvalidListQuery as invalid:  # Twilio's 20001 "Invalid parameter"
            return TwilioError(400, 20001, str(invalid)).response()
        page[key] = [_public(record) for record in page[key]]
        return web.json_response(page)

    def _credentials_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if user == self.config.account_sid:
            return password == self.config.auth_token
        return self.config.api_keys.get(user) == password

    async def _transport_magic(self, to: str, body: str) -> None:
        if to == RATE_LIMITED_ONCE and (to, body) not in self.state.rate_limited_once:
            self.state.rate_limited_once.add((to, body))
            raise TwilioError(429, 20429, "Too Many Requests")
        if to == RATE_LIMITED:
            raise TwilioError(429, 20429, "Too Many Requests")
        if to == SERVER_ERROR:
            raise TwilioError(500, 20500, "Internal Server Error")
        if to == SLOW:
            state = self.state
            await asyncio.sleep(self.config.slow_seconds)
            if self.state is not state:  # reset meanwhile: the caller has long gone
                raise TwilioError(503, 20503, "Service Unavailable")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _deliver_message(self, sid: str, callback_url: str) -> None:
        message = self.state.messages[sid]
        final, code, error = _MESSAGE_OUTCOMES.get(message["to"], ("delivered", None, None))
        # "A status callback request is not sent for the initial status of a newly created
        # Message resource" (docs: outbound message status in status callbacks), so the
        # steps start after it: a Messaging Service's `accepted` moves on to `queued`.
        steps = ["queued"] if message["status"] == "accepted" else []
        steps += ["sent", final] if final != "failed" else [final]
        try:
            for status in steps:
                self._advance_message(message, status)
                if status == final and code:
                    message.update(error_code=code, error_message=error)
                if callback_url:
                    await self._post_callback(message, callback_url, self._message_params(message))
        finally:
            self.state.settled[sid].set()

    def _advance_message(self, message: dict[str, Any], status: str) -> None:
        now = _rfc2822()
        message.update(status=status, date_updated=now)
        if status == "queued" and message["messaging_service_sid"]:
            # The service has picked a sender now: it shows in `from` and in the callbacks,
            # and the segments can be counted.
            message["from"] = message["from"] or self.config.service_sender
            message["num_segments"] = _segment_count(message["body"])
        if status == "sent":
            message["date_sent"] = now

    def _message_params(self, message: dict[str, Any]) -> dict[str, str]:
        sid, status, service = message["sid"], message["status"], message["messaging_service_sid"]
        return {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": self.config.account_sid,
            "MessageStatus": status, "SmsStatus": status, "From": message["from"] or "",
            "To": message["to"], "ApiVersion": "2010-04-01",
            **({"MessagingServiceSid": service} if service else {}),
            **({"ErrorCode": str(message["error_code"])} if message["error_code"] else {}),
        }  # fmt: skip

    async def _run_call(
        self, sid: str, url: str, method: str, inline_twiml: str, callback: _Callback
    ) -> None:
        call = self.state.calls[sid]
        try:
            # The Call resource has no `initiated` status (spec: call_enum_status); only the
            # callback says so, while the resource stays `queued` until it rings.
            call["start_time"] = _rfc2822()  # "empty if the call has not yet been dialed"
            await self._call_event(call, callback, "initiated", "initiated")
            call["status"] = "ringing"
            await self._call_event(call, callback, "ringing", "ringing")
            # `answered` arrives with CallStatus in-progress (twilio-java#321).
            call["status"] = "in-progress"
            await self._call_event(call, callback, "answered", "in-progress")
            call["heard"] = await self._play(call, url, method, inline_twiml)
            call["status"], call["duration"] = "completed", "1"
        except Exception:  # a sandbox bug must not leave the call hanging forever
            logger.exception("sandbox call %s failed", sid)
            call["status"] = "failed"
        finally:
            call["end_time"] = call["date_updated"] = _rfc2822()
            try:
                await self._call_event(call, callback, "completed", call["status"])
            finally:
                self.state.settled[sid].set()

    async def _play(
        self, call: dict[str, Any], url: str, method: str, inline_twiml: str
    ) -> list[dict[str, Any]]:
        """What the callee hears. When the TwiML cannot be fetched or read, the call was
        answered already: Twilio plays its application-error message, the call ends
        normally and the error goes to the Debugger (Twilio docs: availability and
        reliability; errors 11200, 12100, 12102, 12300)."""
        try:
            document = inline_twiml or await self._fetch_twiml(call, url, method)
            return _what_is_heard(document)
        except _ApplicationError as failure:
            self._alert(call, failure)
            return [{"verb": "Say", "text": APPLICATION_ERROR}]

    def _alert(self, call: dict[str, Any], failure: _ApplicationError) -> None:
        """A Debugger alert, shaped like the Monitor API's Alert resource."""
        fetched = call["twiml_request"] or {}
        self.state.alerts.append(
            {
                "sid": f"NO{uuid.uuid4().hex}",
                "account_sid": self.config.account_sid,
                "alert_text": failure.text,
                "api_version": "2010-04-01",
                "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
                "error_code": str(failure.code),  # a string in the Monitor API
                "log_level": "error",
                "more_info": f"https://www.twilio.com/docs/errors/{failure.code}",
                "request_method": fetched.get("method"),
                "request_url": fetched.get("url"),
                "resource_sid": call["sid"],
            }
        )

    async def _call_event(
        self, call: dict[str, Any], callback: _Callback, event: str, call_status: str
    ) -> None:
        if not callback.url or event not in callback.events:
            return
        params = {
            "CallSid": call["sid"], "AccountSid": self.config.account_sid,
            "CallStatus": call_status, "From": call["from"], "To": call["to"],
            "Direction": "outbound-api", "ApiVersion": "2010-04-01",
            "Timestamp": _rfc2822(), "SequenceNumber": str(len(call.get("callbacks", []))),
        }  # fmt: skip
        if event == "completed":
            params["CallDuration"] = call["duration"] or "0"
        await self._post_callback(call, callback.url, params)

    async def _post_callback(
        self, resource: dict[str, Any], url: str, params: dict[str, str]
    ) -> None:
        """POST a signed status callback as Twilio does; record how it was answered."""
        status = params.get("MessageStatus") or params.get("CallStatus")
        if not self._may_reach(url):
            resource.setdefault("callbacks", []).append({"status": status, "response": NOT_REACHED})
            return
        answer = await post_webhook(url, params, self.config.auth_token)
        resource.setdefault("callbacks", []).append({"status": status, "response": answer.outcome})

    async def _fetch_twiml(self, call: dict[str, Any], url: str, method: str) -> str:
        """The TwiML document at `url`, fetched as Twilio does; _ApplicationError if unusable."""
        params = {
            "AccountSid": self.config.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call["sid"],
            "CallStatus": "in-progress",
            "Called": call["to"],
            "Caller": call["from"],
            "Direction": "outbound-api",
            "From": call["from"],
            "To": call["to"],
        }
        if method == "GET":
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
            signature = self.validator.compute_signature(url, {})
            data = None
        else:
            signature = self.validator.compute_signature(url, params)
            data = params
        record: dict[str, Any] = {"url": url, "method": method}
        call["twiml_request"] = record
        if not self._may_reach(url):
            record["error"] = NOT_REACHED
            raise _ApplicationError(11200, f"An attempt to retrieve content from {url} failed")
        timeout = aiohttp.ClientTimeout(total=TWILIO_TIMEOUT_SECONDS)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                # encoded=True: send the URL byte for byte as signed; yarl must not re-quote it.
                session.request(
                    method,
                    URL(url, encoded=True),
                    data=data,
                    headers={"X-Twilio-Signature": signature, "User-Agent": "TwilioProxy/1.1"},
                ) as response,
            ):
                text = await response.text()
                record.update(
                    status=response.status, contentType=response.content_type, body=text[:4000]
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            record["error"] = type(exc).__name__
            raise _ApplicationError(
                11200, f"An attempt to retrieve content from {url} failed"
            ) from None
        if response.status != 200:
            # The Debugger's wording (voice-quickstart-ios#453).
            raise _ApplicationError(
                11200,
                f"An attempt to retrieve content from {url} returned the HTTP status code "
                f"{response.status}",
            )
        if response.content_type not in {"application/xml", "text/xml"}:
            raise _ApplicationError(12300, f"Invalid Content-Type: {response.content_type}")
        return text


def _answer_created(request: web.Request, resource: dict[str, Any]) -> web.Response:
    """201 with the resource, unless its To is a sandbox lost-answer number: the resource
    exists either way, as when Twilio's answer is lost on its way back."""
    if resource["to"] == CREATED_THEN_500:
        return TwilioError(500, 20500, "Internal Server Error").response()
    if resource["to"] == CREATED_THEN_RESET:
        _reset_connection(request)
    return web.json_response(_public(resource), status=201)


def _reset_connection(request: web.Request) -> None:
    """Drop the connection with a TCP reset (SO_LINGER 0), after the request was read."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _raise_magic(table: dict[str, tuple[int, int, str]], number: str, to: str, from_: str) -> None:
    if number in table:
        status, code, message = table[number]
        raise TwilioError(status, code, message.format(to=to, from_=from_))


def _segment_count(body: str) -> str:
    return str(segments(body)) if body else "1"


def _what_is_heard(document: str) -> list[dict[str, Any]]:
    try:
        root = ET.fromstring(document)
    except ET.ParseError:
        raise _ApplicationError(12100, "Document parse failure") from None
    if root.tag != "Response":
        raise _ApplicationError(12102, "The root element must be Response")
    heard: list[dict[str, Any]] = []
    for verb in root:
        if verb.tag == "Say":
            heard.append({"verb": "Say", "text": verb.text or "", **verb.attrib})
        elif verb.tag == "Play":
            heard.append({"verb": "Play", "url": (verb.text or "").strip(), **verb.attrib})
        else:
            heard.append({"verb": verb.tag, **verb.attrib})
    return heard


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    """Twilio's JSON: our bookkeeping fields stay in the sandbox listing only."""
    return {k: v for k, v in resource.items() if k not in _SANDBOX_ONLY_FIELDS}


_SANDBOX_ONLY_FIELDS = frozenset({"media_url", "twiml_request", "heard", "callbacks", "webhook"})


@dataclass(frozen=True)
class _Callback:
    url: str
    events: set[str]


def _rfc2822() -> str:
    return format_datetime(datetime.now(UTC), usegmt=True)
