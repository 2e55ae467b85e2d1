"""The bodies of the mobile routes, requests and answers, declared once.

Validation (shared/validation.py `decode`) and the OpenAPI document (shared/openapi.py)
come from the request declarations, and the answers are built as these Structs, so the
document cannot drift from the code. What a type cannot say (E.164, allowed senders, URL
rules, "body unless mediaUrl") is checked by the use cases, which report it in the same
error list.

Imported only where a body is parsed or the document built: msgspec stays off the cold
TwiML path.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.twiml import MAX_SAY_CHARACTERS
from shared.urls import MAX_URL_LENGTH
from shared.voices import ACCEPTED_VOICES

MAX_BODY_CHARACTERS = 1600  # Twilio's limit for one message body
MAX_MEDIA = 10  # Twilio's limit of media per MMS
MAX_NUMBER_LENGTH = 64  # room for a national format with spaces; E.164 itself is ≤ 16
MAX_RECIPIENTS = 100_000  # BROADCAST_MAX_RECIPIENTS may lower it, never raise it

Number = Annotated[
    str,
    Meta(
        max_length=MAX_NUMBER_LENGTH,
        description="E.164, e.g. +14155550100 (national formats when DEFAULT_REGION is set)",
        examples=["+14155550100"],
    ),
]
Sender = Annotated[
    str,
    Meta(max_length=MAX_NUMBER_LENGTH, description="One of the allowed senders (number or MG…)"),
]
Url = Annotated[str, Meta(max_length=MAX_URL_LENGTH)]


class SendSmsRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: Number
    body: (
        Annotated[str, Meta(max_length=MAX_BODY_CHARACTERS, description="Required unless mediaUrl")]
        | None
    ) = None
    from_: Sender | None = msgspec.field(default=None, name="from")
    mediaUrl: Url | Annotated[list[Url], Meta(max_length=MAX_MEDIA)] | None = None


class MakeCallRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: Number
    from_: Sender | None = msgspec.field(default=None, name="from")
    message: (
        Annotated[
            str,
            Meta(
                max_length=MAX_SAY_CHARACTERS,
                description="Spoken, or an https URL on an allowed host to play",
            ),
        ]
        | None
    ) = None
    voice: Annotated[str, Meta(max_length=80, description=ACCEPTED_VOICES)] | None = None
    language: (
        Annotated[str, Meta(max_length=35, description="A language tag such as en-US")] | None
    ) = None
    url: (
        Annotated[
            str,
            Meta(
                max_length=MAX_URL_LENGTH,
                description="Your TwiML: https, on a host in TWIML_ALLOWED_HOSTS",
            ),
        ]
        | None
    ) = None


class BroadcastRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    to: Annotated[
        list[Number],
        Meta(
            min_length=1, max_length=MAX_RECIPIENTS, description="At most BROADCAST_MAX_RECIPIENTS"
        ),
    ]
    body: Annotated[str, Meta(min_length=1, max_length=MAX_BODY_CHARACTERS)]
    from_: Sender | None = msgspec.field(default=None, name="from")


REQUESTS: tuple[type[msgspec.Struct], ...] = (SendSmsRequest, MakeCallRequest, BroadcastRequest)


# Answers --------------------------------------------------------------------------------


class SmsResult(msgspec.Struct, kw_only=True):
    sid: str
    status: str
    to: str
    from_: str | None = msgspec.field(name="from")
    messagingServiceSid: str | None
    numSegments: int | None  # 0 for a Messaging Service send: no sender yet
    dateCreated: str | None


class CallResult(msgspec.Struct, kw_only=True):
    sid: str
    status: str
    to: str
    from_: str | None = msgspec.field(name="from")


class HistoryEntry(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str
    at: str
    errorCode: int | None = None


class DeliveryStatus(msgspec.Struct, kw_only=True, omit_defaults=True):
    sid: str
    status: str
    to: str | None
    errorCode: int | None
    createdAt: str | None
    history: list[HistoryEntry]
    duration: Annotated[int | None, Meta(description="Calls only: seconds")] | msgspec.UnsetType = (
        msgspec.UNSET
    )


class Media(msgspec.Struct, kw_only=True):
    url: str
    contentType: str | None


class ConversationEntry(msgspec.Struct, kw_only=True):
    sid: str
    direction: Annotated[
        Literal["outbound", "inbound"],
        Meta(description="outbound: this caller sent it; inbound: the number sent it"),
    ]
    from_: str = msgspec.field(name="from")
    to: str
    body: str
    at: Annotated[str, Meta(description="When it was sent or received (ISO 8601, UTC)")]
    media: list[Media]
    messagingServiceSid: str | None


class Conversation(msgspec.Struct, kw_only=True):
    number: str
    messages: Annotated[list[ConversationEntry], Meta(description="Newest first")]
    next: (
        Annotated[str, Meta(description="Pass as `after` for the next page; null: no more")] | None
    )


RESPONSES: tuple[type[msgspec.Struct], ...] = (
    SmsResult, CallResult, DeliveryStatus, Conversation,
)  # fmt: skip


def answer(result: msgspec.Struct) -> dict[str, object]:
    """A declared answer as the JSON-ready dict handlers send."""
    built: dict[str, object] = msgspec.to_builtins(result)
    return built
