"""Listing messages and calls from the sandbox through the real twilio library: filters,
date filters that honour only the date, paging, and Twilio's page envelope."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioException

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, OTHER_FROM, VALID_FROM, VALID_TO, Sandbox

API = f"/2010-04-01/Accounts/{ACCOUNT_SID}"
OTHER_TO = "+14155550111"
TWIML = "<Response><Say>Hi</Say></Response>"


def send(client: Any, sandbox: Sandbox, to: str = VALID_TO, from_: str = VALID_FROM) -> str:
    """A message that has been sent (it has a date_sent)."""
    sid: str = client.messages.create(to=to, from_=from_, body="x").sid
    sandbox.get(f"/sandbox/messages/{sid}?wait=10")
    return sid


def dial(client: Any, sandbox: Sandbox, to: str = VALID_TO, from_: str = VALID_FROM) -> str:
    sid: str = client.calls.create(to=to, from_=from_, twiml=TWIML).sid
    sandbox.settled_call(sid)
    return sid


def raw_list(sandbox: Sandbox, resource: str, **query: str) -> requests.Response:
    return requests.get(
        f"{sandbox.url}{API}/{resource}.json",
        params=query,
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )


def gets(sandbox: Sandbox, resource: str) -> int:
    return sum(1 for r in sandbox.requests() if (r["method"], r["resource"]) == ("GET", resource))


def test_messages_newest_first_over_several_pages(twilio_client: Any, sandbox: Sandbox) -> None:
    sids = [send(twilio_client, sandbox) for _ in range(5)]
    listed = twilio_client.messages.list(page_size=2)
    assert [m.sid for m in listed] == sids[::-1]
    assert gets(sandbox, "Messages") == 3  # pages of 2, 2 and 1, following next_page_uri


def test_messages_filtered_by_to_and_from(twilio_client: Any, sandbox: Sandbox) -> None:
    mine = send(twilio_client, sandbox, to=OTHER_TO, from_=OTHER_FROM)
    send(twilio_client, sandbox, to=OTHER_TO, from_=VALID_FROM)
    send(twilio_client, sandbox, to=VALID_TO, from_=OTHER_FROM)
    listed = twilio_client.messages.list(to=OTHER_TO, from_=OTHER_FROM)
    assert [m.sid for m in listed] == [mine]
    assert len(twilio_client.messages.list(to=OTHER_TO)) == 2


def test_message_date_filters_use_only_the_date(twilio_client: Any, sandbox: Sandbox) -> None:
    sid = send(twilio_client, sandbox)
    sent = twilio_client.messages(sid).fetch().date_sent
    day_end = datetime.combine(sent.date(), time(23, 59, 59), UTC)
    day_start = datetime.combine(sent.date(), time(0, 0, 0), UTC)

    def listed(**filters: Any) -> list[str]:
        return [m.sid for m in twilio_client.messages.list(**filters)]

    # Sent before 23:59:59 that day, yet "after" it: Twilio compares dates only.
    assert listed(date_sent_after=day_end) == [sid]
    assert listed(date_sent_before=day_start) == [sid]  # on and before that date
    assert listed(date_sent=day_end) == [sid]
    assert listed(date_sent_after=day_start + timedelta(days=1)) == []
    assert listed(date_sent_before=day_start - timedelta(days=1)) == []


def test_a_message_never_sent_matches_no_date_filter(twilio_client: Any, sandbox: Sandbox) -> None:
    send(twilio_client, sandbox, to="+15005550308")  # fails before it is sent
    today = datetime.now(UTC)
    assert [m.status for m in twilio_client.messages.list()] == ["failed"]
    assert twilio_client.messages.list(date_sent_after=today - timedelta(days=1)) == []


def test_calls_filtered_paged_newest_first(twilio_client: Any, sandbox: Sandbox) -> None:
    sids = [dial(twilio_client, sandbox) for _ in range(3)]
    other = dial(twilio_client, sandbox, to=OTHER_TO, from_=OTHER_FROM)
    listed = twilio_client.calls.list(
        to=VALID_TO, from_=VALID_FROM, status="completed", page_size=2
    )
    assert [c.sid for c in listed] == sids[::-1]
    assert [c.sid for c in twilio_client.calls.list(from_=OTHER_FROM)] == [other]
    assert twilio_client.calls.list(status="busy") == []


def test_call_start_time_filters_use_only_the_date(twilio_client: Any, sandbox: Sandbox) -> None:
    sid = dial(twilio_client, sandbox)
    started = twilio_client.calls(sid).fetch().start_time
    day_end = datetime.combine(started.date(), time(23, 59, 59), UTC)
    day_start = datetime.combine(started.date(), time(0, 0, 0), UTC)

    def listed(**filters: Any) -> list[str]:
        return [c.sid for c in twilio_client.calls.list(**filters)]

    assert listed(start_time_after=day_end) == [sid]  # "on or after" the date
    assert listed(start_time=day_end) == [sid]
    assert listed(start_time_before=day_start) == []  # "before this date"
    assert listed(start_time_before=day_start + timedelta(days=1)) == [sid]


def test_page_envelope(twilio_client: Any, sandbox: Sandbox) -> None:
    sids = [send(twilio_client, sandbox) for _ in range(3)]
    first = raw_list(sandbox, "Messages", To=VALID_TO, PageSize="2")
    assert first.status_code == 200
    body = first.json()
    path = f"{API}/Messages.json"
    assert body == {
        "messages": body["messages"],
        "end": 1,
        "first_page_uri": f"{path}?To=%2B14155550100&PageSize=2&Page=0",
        "next_page_uri": f"{path}?To=%2B14155550100&PageSize=2&Page=1&PageToken=PA{sids[1]}",
        "page": 0,
        "page_size": 2,
        "previous_page_uri": None,
        "start": 0,
        "uri": f"{path}?To=%2B14155550100&PageSize=2&Page=0",
    }
    assert [m["sid"] for m in body["messages"]] == [sids[2], sids[1]]
    assert "media_url" not in body["messages"][0]  # Twilio's fields only

    second = requests.get(
        f"{sandbox.url}{body['next_page_uri']}", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10
    ).json()
    assert (second["start"], second["end"], second["next_page_uri"]) == (2, 2, None)
    assert [m["sid"] for m in second["messages"]] == [sids[0]]
    assert second["previous_page_uri"] == (
        f"{path}?To=%2B14155550100&PageSize=2&Page=0&PageToken=PB{sids[0]}"
    )
    back = requests.get(
        f"{sandbox.url}{second['previous_page_uri']}", auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10
    ).json()
    assert [m["sid"] for m in back["messages"]] == [sids[2], sids[1]]


def test_empty_page(sandbox: Sandbox) -> None:
    body = raw_list(sandbox, "Calls").json()
    path = f"{API}/Calls.json"
    assert body == {
        "calls": [],
        "end": 0,
        "first_page_uri": f"{path}?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": f"{path}?PageSize=50&Page=0",
    }


def test_page_size_is_capped_at_1000(sandbox: Sandbox) -> None:
    # twilio-python sends list(limit=5000) as PageSize=5000.
    assert raw_list(sandbox, "Messages", PageSize="5000").json()["page_size"] == 1000


@pytest.mark.parametrize(
    ("resource", "query", "message"),
    [
        ("Messages", {"DateSent>": "yesterday"}, "Invalid date value"),
        ("Messages", {"DateSent": "2024-13-01"}, "Invalid date value"),
        ("Calls", {"StartTime<": "2024-05-06 10:00"}, "Invalid date value"),
        ("Messages", {"PageSize": "0"}, "Invalid PageSize"),
        ("Messages", {"Page": "-1"}, "Invalid Page"),
        ("Messages", {"PageToken": "PAnot-a-sid"}, "Invalid PageToken"),
        ("Calls", {"Status": "initiated"}, "Invalid Status"),
    ],
)
def test_unusable_list_parameters_are_400_20001(
    sandbox: Sandbox, resource: str, query: dict[str, str], message: str
) -> None:
    response = raw_list(sandbox, resource, **query)
    assert (response.status_code, response.json()) == (
        400,
        {
            "code": 20001,
            "message": message,
            "more_info": "https://www.twilio.com/docs/errors/20001",
            "status": 400,
        },
    )


def test_listing_needs_the_accounts_credentials(sandbox: Sandbox) -> None:
    response = requests.get(
        f"{sandbox.url}{API}/Calls.json", params={"Status": "x"}, auth=("x", "y"), timeout=10
    )
    assert (response.status_code, response.json()["code"]) == (401, 20003)
    other = requests.get(
        f"{sandbox.url}/2010-04-01/Accounts/AC{'f' * 32}/Calls.json",
        auth=(ACCOUNT_SID, AUTH_TOKEN),
        timeout=10,
    )
    assert (other.status_code, other.json()["code"]) == (404, 20404)


def test_the_library_refuses_a_page_that_is_not_200(twilio_client: Any) -> None:
    with pytest.raises(TwilioException, match="Unable to fetch page"):
        twilio_client.messages.list(date_sent_after="soon")
