"""GET /api/conversations/{number}: the caller's own messages with a number, newest first, paged."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import pytest
from twilio.request_validator import RequestValidator

from devhost.phone import inbound_sms_params
from shared.conversations import decode_token, encode_token
from shared.errors import BadRequest
from shared.memory_store import MemoryStore
from shared.messaging import remember_sent
from shared.phone import mask
from shared.store import ConversationMessage, StoreUnavailable
from tests.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    VALID_FROM,
    VALID_TO,
    FakeClock,
    Handler,
    SetEnv,
    body_of,
    build_request,
)

ALICE = {"x-functions-key": "alice-key"}
BOB = {"x-functions-key": "bob-key"}
INCOMING = f"{PUBLIC_BASE_URL}/api/IncomingSms"


@pytest.fixture
def fns(
    functions: dict[str, Handler], app_env: SetEnv, fake_clock: FakeClock
) -> dict[str, Handler]:
    return functions


def get(
    fns: dict[str, Handler], headers: Mapping[str, str], number: str = VALID_TO, query: str = ""
) -> tuple[int, Any]:
    url = f"{PUBLIC_BASE_URL}/api/conversations/{quote(number)}{query}"
    response = fns["Conversation"](
        build_request("GET", url, headers=headers, route_params={"number": number})
    )
    return response.status_code, body_of(response)


def send(fns: dict[str, Handler], headers: Mapping[str, str], body: str) -> str:
    response = fns["SendSms"](
        build_request("POST", json_body={"to": VALID_TO, "body": body}, headers=headers)
    )
    assert response.status_code == 201
    sid: str = body_of(response)["sid"]
    return sid


def reply(fns: dict[str, Handler], body: str) -> None:
    form = inbound_sms_params(ACCOUNT_SID, VALID_TO, VALID_FROM, body)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(INCOMING, form)
    request = build_request("POST", INCOMING, form=form, headers={"X-Twilio-Signature": signature})
    assert fns["IncomingSms"](request).status_code == 200


def bodies(answer: Any) -> list[str]:
    return [f"{m['direction']}:{m['body']}" for m in answer["messages"]]


def test_each_caller_sees_its_own_sends_and_the_replies_after_them(
    fns: dict[str, Handler], fake_clock: FakeClock
) -> None:
    reply(fns, "before anyone wrote")
    fake_clock.advance(1)
    sid = send(fns, ALICE, "from alice")
    fake_clock.advance(1)
    reply(fns, "hi alice")
    fake_clock.advance(1)
    send(fns, BOB, "from bob")
    fake_clock.advance(1)
    reply(fns, "hi both")
    status, alice = get(fns, ALICE)
    assert (status, bodies(alice), alice["next"]) == (
        200,
        ["inbound:hi both", "inbound:hi alice", "outbound:from alice"],
        None,
    )
    assert alice["number"] == VALID_TO
    assert alice["messages"][2] == {
        "sid": sid, "direction": "outbound", "from": VALID_FROM, "to": VALID_TO,
        "body": "from alice", "at": alice["messages"][2]["at"], "media": [],
        "messagingServiceSid": None,
    }  # fmt: skip
    assert alice["messages"][2]["at"].endswith("+00:00")
    assert bodies(get(fns, BOB)[1]) == ["inbound:hi both", "outbound:from bob"]


def test_a_caller_that_never_sent_there_sees_an_empty_list_not_a_404(
    fns: dict[str, Handler],
) -> None:
    send(fns, ALICE, "secret")
    reply(fns, "secret reply")
    empty: dict[str, Any] = {"number": VALID_TO, "messages": [], "next": None}
    assert get(fns, BOB) == (200, empty)
    assert get(fns, ALICE, "+14155550123") == (
        200,
        {"number": "+14155550123", "messages": [], "next": None},
    )


def test_pages_are_exact_and_the_token_continues(
    fns: dict[str, Handler], fake_clock: FakeClock
) -> None:
    for i in range(5):
        send(fns, ALICE, f"m{i}")
        fake_clock.advance(0.001)
    status, first = get(fns, ALICE, query="?limit=2")
    assert (status, bodies(first)) == (200, ["outbound:m4", "outbound:m3"])
    _, second = get(fns, ALICE, query=f"?limit=2&after={first['next']}")
    assert bodies(second) == ["outbound:m2", "outbound:m1"]
    _, last = get(fns, ALICE, query=f"?limit=2&after={second['next']}")
    assert (bodies(last), last["next"]) == (["outbound:m0"], None)
    # Bob holding Alice's token still sees only his own (nothing).
    assert get(fns, BOB, query=f"?limit=2&after={first['next']}")[1]["messages"] == []
    # The default page is 20.
    assert len(get(fns, ALICE)[1]["messages"]) == 5


def page_problem(detail: str) -> dict[str, Any]:
    return {
        "type": "urn:twilio-functions:problem:bad-request",
        "title": "Bad Request",
        "status": 400,
        "detail": detail,
        "rule": "page",
    }


@pytest.mark.parametrize(
    "limit", ["0", "101", "-1", "ten", "1e2", "\uff15", "0005", "99999999999999999999"]
)
def test_a_limit_out_of_range_is_400(fns: dict[str, Handler], limit: str) -> None:
    assert get(fns, ALICE, query=f"?limit={quote(limit)}") == (
        400,
        page_problem("limit must be a whole number from 1 to 100."),
    )


@pytest.mark.parametrize(
    "after", ["x", "", "AAAA", encode_token("0000000000001~SM/../x"), "A" * 200, "%FF"]
)
def test_a_token_the_api_did_not_give_is_400(fns: dict[str, Handler], after: str) -> None:
    assert get(fns, ALICE, query=f"?after={quote(after)}") == (
        400,
        page_problem("after is not a token this API gave."),
    )


def test_tokens_round_trip() -> None:
    position = "9999999999999~SM" + "a" * 32
    assert decode_token(encode_token(position)) == position
    with pytest.raises(BadRequest):
        decode_token(encode_token("9999999999999~SM" + "a" * 32 + "|m"))


@pytest.mark.parametrize("number", ["not-a-number", "+1", "", "+" + "9" * 40])
def test_a_number_that_is_not_one_is_400(fns: dict[str, Handler], number: str) -> None:
    status, body = get(fns, ALICE, number)
    assert (status, body["type"], [e["field"] for e in body["errors"]]) == (
        400,
        "urn:twilio-functions:problem:validation",
        ["number"],
    )


def test_only_get(fns: dict[str, Handler]) -> None:
    url = f"{PUBLIC_BASE_URL}/api/conversations/{VALID_TO}"
    response = fns["Conversation"](
        build_request("POST", url, headers=ALICE, route_params={"number": VALID_TO})
    )
    assert (response.status_code, response.headers["Allow"]) == (405, "GET")


class FailingConversations(MemoryStore):
    """A store whose conversation writes fail, as Table Storage does when it is down."""

    def record_sent_message(self, caller: str, message: ConversationMessage) -> None:
        raise StoreUnavailable()


def test_a_send_twilio_accepted_is_recorded_though_its_conversation_cannot_be(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingConversations()
    message = SimpleNamespace(
        sid="SM" + "7" * 32, to=VALID_TO, from_=VALID_FROM, body="hi", status="queued",
        messaging_service_sid=None, num_segments="1", date_created=None,
    )  # fmt: skip
    accepted = remember_sent(store, message, "alice", None)
    accepted.record()  # does not raise: Twilio already accepted the message
    delivery = store.delivery("message", message.sid)
    assert delivery is not None and delivery.caller == "alice"
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        f"Could not add message {message.sid} to the conversation with {mask(VALID_TO)} "
        "(its replies will not show)",
    ]
