"""What a caller exchanged with one phone number: its sends there, and that number's replies.

A conversation belongs to the caller that sent to the number (shared/caller.py names it,
in every auth mode). Another caller sees nothing, not even that the number has written:
for it the list is empty, as for a number nobody texted. A reply is shown to each caller
that had sent to its number when it arrived (shared/store.py keeps one view per caller).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from shared.errors import BadRequest
from shared.phone import mask
from shared.store import ConversationMessage, Store, StoreUnavailable

DEFAULT_PAGE = 20
MAX_PAGE = 100
# A position in a conversation (shared/store.py conversation_position), as tokens carry it.
_POSITION = re.compile(r"[0-9]{13}~[A-Za-z0-9]{2,64}")

logger = logging.getLogger(__name__)


def remember_sent(
    store: Store,
    caller: str,
    message: ConversationMessage,
) -> None:
    """Add a message Twilio accepted to `caller`'s conversation with its recipient, which
    also shows the caller the recipient's replies from now on. Twilio already accepted it:
    a store failure is logged, never the request's failure."""
    try:
        store.record_sent_message(caller, message)
    except StoreUnavailable:
        logger.error("Could not add message %s to the conversation with %s (its replies "
                     "will not show)", message.sid, mask(message.to))  # fmt: skip


def page_request(limit: str | None, after: str | None) -> tuple[int, str | None]:
    """The page size and the position a `limit` and `after` token ask for; 400 otherwise."""
    size = DEFAULT_PAGE
    if limit is not None:
        if not (
            limit.isascii() and limit.isdigit() and len(limit) <= 3 and 1 <= int(limit) <= MAX_PAGE
        ):
            raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.",
                             extra={"rule": "page"})  # fmt: skip
        size = int(limit)
    return size, None if after is None else decode_token(after)


def encode_token(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def decode_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        position = raw.decode("ascii")
    except (binascii.Error, ValueError):
        position = ""
    if len(token) > 120 or not _POSITION.fullmatch(position):
        raise BadRequest("after is not a token this API gave.", extra={"rule": "page"})
    return position


def view(number: str, messages: Sequence[ConversationMessage], after: str | None) -> dict[str, Any]:
    from shared.shapes import Conversation, ConversationEntry, Media, answer

    return answer(
        Conversation(
            number=number,
            messages=[
                ConversationEntry(
                    sid=m.sid,
                    direction=m.direction,
                    from_=m.from_,
                    to=m.to,
                    body=m.body,
                    at=datetime.fromtimestamp(m.at, UTC).isoformat(timespec="milliseconds"),
                    media=[Media(url=url, contentType=kind or None) for url, kind in m.media],
                    messagingServiceSid=m.messaging_service_sid,
                )
                for m in messages
            ],
            next=encode_token(after) if after else None,
        )
    )
