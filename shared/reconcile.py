"""Did Twilio get it? Finding a create whose answer was lost, in Twilio's own lists.

Twilio's creates take no idempotency key: after a timeout, a reset connection, a 5xx
or a crash, only Twilio's Messages and Calls lists can tell whether the message or call
exists. We list by To (and From), newest first, back to shortly before the attempt
started, and take the first one that matches what was asked for and that no other
Idempotency-Key of ours has claimed. Twilio filters dates by day only, so the time
window is ours to apply.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from shared.delivery_status import Kind
from shared.store import Attempt, Store

if TYPE_CHECKING:
    from twilio.rest import Client

# Our clock and Twilio's may disagree a little; a create cannot predate its attempt by more.
CLOCK_SKEW_SECONDS = 120
# Newest first, a page of 50 at a time: how far back one lookup goes before it gives up.
MAX_LISTED = 200


def content_digest(body: str | None) -> str:
    return hashlib.sha256((body or "").encode()).hexdigest()


def find_created(client: Client, store: Store, attempt: Attempt) -> Any | None:
    """The Twilio message or call instance `attempt` created, or None if Twilio has none.
    Raises what the twilio library raises when Twilio cannot be asked."""
    if attempt.kind == "message":
        filters = {"to": attempt.to}
        if not attempt.sender.startswith("MG"):
            filters["from_"] = attempt.sender
        listed: Iterable[Any] = client.messages.stream(page_size=50, limit=MAX_LISTED, **filters)
    else:
        listed = client.calls.stream(
            to=attempt.to, from_=attempt.sender, page_size=50, limit=MAX_LISTED
        )
    earliest = attempt.started_at - CLOCK_SKEW_SECONDS
    for resource in listed:
        created = resource.date_created
        if created is not None and created.timestamp() < earliest:
            return None  # newest first: everything further is older still
        if _matches(resource, attempt) and not _claimed_by_another(store, attempt, resource.sid):
            return resource
    return None


def _matches(resource: Any, attempt: Attempt) -> bool:
    if resource.to != attempt.to or resource.direction != "outbound-api":
        return False
    if attempt.kind == "call":
        return bool(resource._from == attempt.sender)  # twilio-python: `_from` on calls
    sender_matches = (
        resource.messaging_service_sid == attempt.sender
        if attempt.sender.startswith("MG")
        else resource.from_ == attempt.sender
    )
    return sender_matches and content_digest(resource.body) == attempt.content


def _claimed_by_another(store: Store, attempt: Attempt, sid: str) -> bool:
    kind: Kind = attempt.kind
    record = store.delivery(kind, sid)
    return record is not None and record.attempt not in (None, attempt.owner)
