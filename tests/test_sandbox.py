"""The sandbox itself, through the real twilio library: what it refuses, what it posts
back, what a call's unusable TwiML does, lost answers, what it may reach, segments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests
from aiohttp import web
from twilio.base.exceptions import TwilioRestException

from devhost.sandbox import (
    APPLICATION_ERROR,
    CREATED_THEN_500,
    CREATED_THEN_RESET,
    NOT_REACHED,
    RATE_LIMITED_ONCE,
    SERVER_ERROR,
    may_reach,
    segments,
)
from devhost.serving import BackgroundServer
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MG_SID,
    OTHER_FROM,
    VALID_FROM,
    VALID_TO,
    Sandbox,
)

API = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
NOT_OWNED = "+14155550123"
TWIML = "<Response><Say>Hi</Say></Response>"


def create_call(sandbox: Sandbox, **params: str) -> dict[str, Any]:
    response = requests.post(
        f"{sandbox.url}{API}/Calls.json",
        data={"To": VALID_TO, "From": VALID_FROM, **params},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert response.status_code == 201
    return sandbox.settled_call(response.json()["sid"])


def refusal(create: Any, **params: Any) -> tuple[int, int, str]:
    with pytest.raises(TwilioRestException) as raised:
        create(**params)
    return raised.value.status, raised.value.code, raised.value.msg


class CallbackSink:
    """A status-callback endpoint on loopback that records each callback, together with
    what the sandbox's REST API said about the resource at that moment."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.received: list[dict[str, str]] = []
        self._sandbox = sandbox
        app = web.Application()
        app.router.add_post("/status", self._receive)
        self._server = BackgroundServer(app).start()
        self.url = f"{self._server.url}/status"

    async def _receive(self, request: web.Request) -> web.Response:
        entry = {k: str(v) for k, v in (await request.post()).items()}
        kind, sid = (
            ("Calls", entry["CallSid"]) if "CallSid" in entry else ("Messages", entry["MessageSid"])
        )
        auth = {"Authorization": aiohttp.encode_basic_auth(ACCOUNT_SID, AUTH_TOKEN)}
        async with (
            aiohttp.ClientSession(headers=auth) as session,
            session.get(f"{self._sandbox.url}{API}/{kind}/{sid}.json") as response,
        ):
            entry["resource_status"] = (await response.json())["status"]
        self.received.append(entry)
        return web.Response(status=204)

    def statuses(self, key: str) -> list[tuple[str, str]]:
        return [(entry[key], entry["resource_status"]) for entry in self.received]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def sink(sandbox: Sandbox) -> Iterator[CallbackSink]:
    receiver = CallbackSink(sandbox)
    yield receiver
    receiver.stop()


# Senders the account does not own -----------------------------------------------------


def test_sms_from_a_number_the_account_does_not_own_is_21606(twilio_client: Any) -> None:
    create = twilio_client.messages.create
    assert refusal(create, to=VALID_TO, from_=NOT_OWNED, body="x") == (
        400,
        21606,
        f"Unable to create record: The From phone number {NOT_OWNED} is not a valid, "
        "SMS-capable inbound phone number or short code for your account.",
    )


def test_call_from_a_number_the_account_does_not_own_is_21210(twilio_client: Any) -> None:
    create = twilio_client.calls.create
    assert refusal(create, to=VALID_TO, from_=NOT_OWNED, twiml=TWIML) == (
        400,
        21210,
        f"Unable to create record: The source phone number provided, {NOT_OWNED}, is not yet "
        "verified for your account. You may only make calls from phone numbers that you've "
        "verified or purchased from Twilio.",
    )


def test_refusal_body_is_twilios_error_shape(sandbox: Sandbox) -> None:
    response = requests.post(
        f"{sandbox.url}{API}/Calls.json",
        data={"To": VALID_TO, "From": NOT_OWNED, "Twiml": TWIML},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert (response.status_code, response.headers["Content-Type"]) == (
        400,
        "application/json; charset=utf-8",
    )
    assert response.json() == {
        "code": 21210,
        "message": f"The source phone number provided, {NOT_OWNED}, is not yet verified for "
        "your account. You may only make calls from phone numbers that you've verified or "
        "purchased from Twilio.",
        "more_info": "https://www.twilio.com/docs/errors/21210",
        "status": 400,
    }
    assert sandbox.messages() == [] and sandbox.calls() == []


@pytest.mark.parametrize(
    ("sender", "status", "code"),
    [
        ("+15005550001", 400, 21212),
        ("+15005550007", 400, 21606),
        ("+15005550008", 429, 21611),  # Twilio answers a full queue with HTTP 429
    ],
)
def test_twilio_magic_senders_keep_their_codes(
    twilio_client: Any, sender: str, status: int, code: int
) -> None:
    with pytest.raises(TwilioRestException) as raised:
        twilio_client.messages.create(to=VALID_TO, from_=sender, body="x")
    assert (raised.value.status, raised.value.code) == (status, code)


def test_every_owned_number_may_send_and_call(twilio_client: Any) -> None:
    message = twilio_client.messages.create(to=VALID_TO, from_=OTHER_FROM, body="x")
    call = twilio_client.calls.create(to=VALID_TO, from_=OTHER_FROM, twiml=TWIML)
    assert (message.from_, message.status, call._from, call.status) == (
        OTHER_FROM,
        "queued",
        OTHER_FROM,
        "queued",
    )


@pytest.mark.parametrize(
    ("service", "code", "message"),
    [
        ("MG123", 21705, "The Messaging Service Sid MG123 is invalid."),
        ("MG" + "g" * 32, 21705, f"The Messaging Service Sid MG{'g' * 32} is invalid."),
        ("PN" + "a" * 32, 21705, f"The Messaging Service Sid PN{'a' * 32} is invalid."),
        ("MG" + "b" * 32, 21701, f"The Messaging Service Sid MG{'b' * 32} does not exist."),
    ],
)
def test_messaging_service_must_be_well_formed_and_owned(
    twilio_client: Any, sandbox: Sandbox, service: str, code: int, message: str
) -> None:
    create = twilio_client.messages.create
    assert refusal(create, to=VALID_TO, messaging_service_sid=service, body="x") == (
        400,
        code,
        f"Unable to create record: {message}",
    )
    assert sandbox.messages() == []


# Messaging Services -------------------------------------------------------------------


def test_messaging_service_send_is_accepted_with_zero_segments_then_gets_a_sender(
    twilio_client: Any, sandbox: Sandbox
) -> None:
    created = twilio_client.messages.create(to=VALID_TO, messaging_service_sid=MG_SID, body="Hi")
    assert (created.status, created.num_segments, created.from_, created.messaging_service_sid) == (
        "accepted",
        "0",
        None,
        MG_SID,
    )
    sandbox.get(f"/sandbox/messages/{created.sid}?wait=10")
    later = twilio_client.messages(created.sid).fetch()
    assert (later.status, later.num_segments, later.from_) == ("delivered", "1", VALID_FROM)


def test_messaging_service_callbacks_carry_the_chosen_sender(
    twilio_client: Any, sandbox: Sandbox, sink: CallbackSink
) -> None:
    created = twilio_client.messages.create(
        to=VALID_TO, messaging_service_sid=MG_SID, body="Hi", status_callback=sink.url
    )
    sandbox.get(f"/sandbox/messages/{created.sid}?wait=10")
    assert {(e["From"], e["MessagingServiceSid"]) for e in sink.received} == {(VALID_FROM, MG_SID)}


# Status callbacks ---------------------------------------------------------------------


def test_no_callback_for_a_messages_initial_status(
    twilio_client: Any, sandbox: Sandbox, sink: CallbackSink
) -> None:
    created = twilio_client.messages.create(
        to=VALID_TO, from_=VALID_FROM, body="Hi", status_callback=sink.url
    )
    sandbox.get(f"/sandbox/messages/{created.sid}?wait=10")
    assert sink.statuses("MessageStatus") == [("sent", "sent"), ("delivered", "delivered")]


def test_no_callback_for_accepted_through_a_messaging_service(
    twilio_client: Any, sandbox: Sandbox, sink: CallbackSink
) -> None:
    created = twilio_client.messages.create(
        to=VALID_TO, messaging_service_sid=MG_SID, body="Hi", status_callback=sink.url
    )
    sandbox.get(f"/sandbox/messages/{created.sid}?wait=10")
    assert sink.statuses("MessageStatus") == [
        ("queued", "queued"),
        ("sent", "sent"),
        ("delivered", "delivered"),
    ]


def test_a_call_posts_only_completed_unless_asked(
    twilio_client: Any, sandbox: Sandbox, sink: CallbackSink
) -> None:
    call = twilio_client.calls.create(
        to=VALID_TO, from_=VALID_FROM, twiml=TWIML, status_callback=sink.url
    )
    sandbox.settled_call(call.sid)
    assert sink.statuses("CallStatus") == [("completed", "completed")]


def test_a_call_posts_the_events_asked_for_answered_as_in_progress(
    twilio_client: Any, sandbox: Sandbox, sink: CallbackSink
) -> None:
    call = twilio_client.calls.create(
        to=VALID_TO, from_=VALID_FROM, twiml=TWIML, status_callback=sink.url,
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )  # fmt: skip
    sandbox.settled_call(call.sid)
    # The Call resource has no `initiated` status: it is still queued then.
    assert sink.statuses("CallStatus") == [
        ("initiated", "queued"),
        ("ringing", "ringing"),
        ("in-progress", "in-progress"),
        ("completed", "completed"),
    ]
    assert [e["SequenceNumber"] for e in sink.received] == ["0", "1", "2", "3"]


def test_answered_alone_is_posted_alone(
    twilio_client: Any, sandbox: Sandbox, sink: CallbackSink
) -> None:
    call = twilio_client.calls.create(
        to=VALID_TO, from_=VALID_FROM, twiml=TWIML, status_callback=sink.url,
        status_callback_event=["answered"],
    )  # fmt: skip
    sandbox.settled_call(call.sid)
    assert sink.statuses("CallStatus") == [("in-progress", "in-progress")]


# A call whose TwiML cannot be used ----------------------------------------------------


def application_error(sandbox: Sandbox, call: dict[str, Any]) -> tuple[Any, ...]:
    """The call as Twilio ends it after an application error, and its one Debugger alert."""
    assert "error_code" not in call  # the error is not the call's
    [alert] = [a for a in sandbox.alerts() if a["resource_sid"] == call["sid"]]
    assert alert["sid"].startswith("NO") and alert["log_level"] == "error"
    assert alert["more_info"] == f"https://www.twilio.com/docs/errors/{alert['error_code']}"
    return (
        call["status"],
        call["heard"],
        alert["error_code"],
        alert["request_method"],
        alert["request_url"],
        alert["alert_text"],
    )


HEARD_ERROR = [{"verb": "Say", "text": APPLICATION_ERROR}]


def test_twiml_with_wrong_content_type_completes_with_alert_12300(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Url=f"{sandbox.url}/sandbox/messages", Method="GET")
    fetched = call["twiml_request"]["url"]  # with Twilio's parameters in the query
    assert fetched.startswith(f"{sandbox.url}/sandbox/messages?AccountSid={ACCOUNT_SID}&")
    assert application_error(sandbox, call) == (
        "completed", HEARD_ERROR, "12300", "GET", fetched, "Invalid Content-Type: application/json",
    )  # fmt: skip


def test_unreachable_twiml_completes_with_alert_11200(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Url="http://127.0.0.1:9/twiml")
    assert application_error(sandbox, call) == (
        "completed", HEARD_ERROR, "11200", "POST", "http://127.0.0.1:9/twiml",
        "An attempt to retrieve content from http://127.0.0.1:9/twiml failed",
    )  # fmt: skip


def test_twiml_answering_404_completes_with_alert_11200(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Url=f"{sandbox.url}/no-twiml-here", Method="POST")
    url = f"{sandbox.url}/no-twiml-here"
    assert application_error(sandbox, call) == (
        "completed", HEARD_ERROR, "11200", "POST", url,
        f"An attempt to retrieve content from {url} returned the HTTP status code 404",
    )  # fmt: skip


def test_unparseable_twiml_completes_with_alert_12100(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Twiml="<Response><Say>")
    assert application_error(sandbox, call) == (
        "completed", HEARD_ERROR, "12100", None, None, "Document parse failure",
    )  # fmt: skip


def test_twiml_without_a_response_root_completes_with_alert_12102(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Twiml="<Say>Hi</Say>")
    assert application_error(sandbox, call) == (
        "completed", HEARD_ERROR, "12102", None, None, "The root element must be Response",
    )  # fmt: skip


def test_the_call_resource_shows_completed_through_the_api(
    twilio_client: Any, sandbox: Sandbox
) -> None:
    call = twilio_client.calls.create(to=VALID_TO, from_=VALID_FROM, url="http://127.0.0.1:9/t")
    sandbox.settled_call(call.sid)
    fetched = twilio_client.calls(call.sid).fetch()
    assert (fetched.status, fetched.duration) == ("completed", "1")


def test_inline_twiml_is_heard(sandbox: Sandbox) -> None:
    call = create_call(
        sandbox, Twiml="<Response><Say>Hi</Say><Play>https://x/a.mp3</Play></Response>"
    )
    assert call["status"] == "completed"
    assert call["heard"] == [
        {"verb": "Say", "text": "Hi"},
        {"verb": "Play", "url": "https://x/a.mp3"},
    ]
    assert sandbox.alerts() == []


def test_url_wins_over_inline_twiml(sandbox: Sandbox) -> None:
    # "If both twiml and url are provided then twiml parameter will be ignored" (spec).
    call = create_call(sandbox, Twiml=TWIML, Url="http://127.0.0.1:9/twiml")
    assert (call["heard"], call["twiml_request"]["url"]) == (
        HEARD_ERROR,
        "http://127.0.0.1:9/twiml",
    )


# Lost answers: created at "Twilio", the answer never arrives ---------------------------


@pytest.mark.parametrize("resource", ["messages", "calls"])
def test_created_then_500_exists_though_the_create_failed(
    twilio_client: Any, sandbox: Sandbox, resource: str
) -> None:
    create = getattr(twilio_client, resource).create
    options = {"body": "x"} if resource == "messages" else {"twiml": TWIML}
    with pytest.raises(TwilioRestException) as raised:
        create(to=CREATED_THEN_500, from_=VALID_FROM, **options)
    assert (raised.value.status, raised.value.code) == (500, 20500)
    [listed] = getattr(twilio_client, resource).list(to=CREATED_THEN_500)
    [stored] = getattr(sandbox, resource)()
    assert listed.sid == stored["sid"]


@pytest.mark.parametrize("resource", ["messages", "calls"])
def test_created_then_reset_exists_though_the_connection_dropped(
    twilio_client: Any, sandbox: Sandbox, resource: str
) -> None:
    create = getattr(twilio_client, resource).create
    options = {"body": "x"} if resource == "messages" else {"twiml": TWIML}
    with pytest.raises(requests.ConnectionError) as raised:
        create(to=CREATED_THEN_RESET, from_=VALID_FROM, **options)
    # urllib3: ProtocolError("Connection aborted.", ConnectionResetError(104, ...))
    assert isinstance(raised.value.args[0].args[1], ConnectionResetError)
    [listed] = getattr(twilio_client, resource).list(to=CREATED_THEN_RESET)
    [stored] = getattr(sandbox, resource)()
    assert listed.sid == stored["sid"]
    assert len(sandbox.requests()) == 2  # the create (not retried) and the lookup


def test_server_error_creates_nothing(twilio_client: Any, sandbox: Sandbox) -> None:
    with pytest.raises(TwilioRestException):
        twilio_client.messages.create(to=SERVER_ERROR, from_=VALID_FROM, body="x")
    assert twilio_client.messages.list(to=SERVER_ERROR) == []


# Where the sandbox may send -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:7071/api/TwiML", True),
        ("http://127.8.9.10/x", True),
        ("http://localhost:7071/api/StatusCallback", True),
        ("http://LOCALHOST/x", True),
        ("http://[::1]:7071/x", True),
        ("http://127.attacker.example/twiml", False),
        ("http://127.0.0.1.nip.io/twiml", False),
        ("http://127.0.0.1@attacker.example/twiml", False),
        ("http://localhost.attacker.example/x", False),
        ("http://0.0.0.0:7071/x", False),
        ("http://10.0.0.1/x", False),
        ("http://[::2]/x", False),
        ("https://functions.example.com/api/TwiML", False),
    ],
)
def test_only_loopback_is_reached(url: str, allowed: bool) -> None:
    assert may_reach(url) is allowed
    assert may_reach(url, internet=True) is True


def test_a_name_starting_with_127_is_not_fetched(sandbox: Sandbox) -> None:
    call = create_call(sandbox, Url="http://127.attacker.example/twiml")
    assert call["twiml_request"]["error"] == NOT_REACHED
    assert [a["error_code"] for a in sandbox.alerts()] == ["11200"]


def test_wrong_account_is_404(sandbox: Sandbox) -> None:
    response = requests.post(
        f"{sandbox.url}/2010-04-01/Accounts/AC{'f' * 32}/Calls.json",
        data={"To": VALID_TO},
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert (response.status_code, response.json()["code"]) == (404, 20404)


@pytest.mark.parametrize(
    ("body", "count"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("[" * 80, 1),  # extension characters take two septets
        ("[" * 81, 2),
        ("é" * 160, 1),  # é is in the GSM-7 alphabet
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("😀" * 35, 1),  # outside the BMP: two UCS-2 units each
        ("😀" * 36, 2),
    ],
)
def test_segments(body: str, count: int) -> None:
    assert segments(body) == count


# What the sandbox lists, by path under /sandbox/ and the answer's key.
HELD = {
    "messages": "messages", "calls": "calls", "incoming-calls": "calls", "alerts": "alerts",
    "requests": "requests",
}  # fmt: skip


def held(sandbox: Sandbox) -> dict[str, list[Any]]:
    return {path: sandbox.get(f"/sandbox/{path}")[key] for path, key in HELD.items()}


def test_reset_forgets_everything_the_sandbox_holds(sandbox: Sandbox) -> None:
    def send_rate_limited_once() -> int:
        form = {"To": RATE_LIMITED_ONCE, "From": VALID_FROM, "Body": "reset me"}
        url = f"{sandbox.url}{API}/Messages.json"
        return requests.post(url, data=form, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10).status_code

    create_call(sandbox, Twiml="<Say>Hi</Say>")  # not a document: an alert too
    ring = {"from": NOT_OWNED, "url": "https://example.com/not-loopback"}  # an alert too
    answer = requests.post(f"{sandbox.url}/sandbox/incoming-calls", json=ring, timeout=10)
    inbound = sandbox.get(f"/sandbox/incoming-calls/{answer.json()['sid']}?wait=10")
    assert [send_rate_limited_once(), send_rate_limited_once()] == [429, 201]
    before = held(sandbox)
    assert {path: len(found) for path, found in before.items()} == {
        "messages": 1, "calls": 1, "incoming-calls": 1, "alerts": 2, "requests": 3,
    }  # fmt: skip
    assert before["incoming-calls"] == [inbound]
    sandbox.reset()
    assert held(sandbox) == {path: [] for path in HELD}
    gone = requests.get(f"{sandbox.url}/sandbox/incoming-calls/{inbound['sid']}", timeout=10)
    assert (gone.status_code, gone.json()) == (404, {"error": "not found"})
    assert send_rate_limited_once() == 429  # the body is new again
