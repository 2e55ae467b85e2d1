"""The app's state: delivery statuses, idempotency keys, rate-limit counters, opt-outs.

One interface, two backends: Azure Table Storage (table_store.py, shared by every
instance and process) and an in-memory store for a single local process
(memory_store.py). Both keep the same contract, and the same contract tests run against
both; state.py picks one. This module holds only what both share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from shared.delivery_status import Created as DeliveryCreated
from shared.delivery_status import Delivery, Kind, StatusEvent
from shared.errors import ServiceUnavailable
from shared.voicemail import CallParties, RecordingEvent, Voicemail

Direction = Literal["outbound", "inbound"]
Slots = dict[int, int]  # a sliding-window counter: slot number -> amount counted in it
# Each counter is kept in this many rows (shards), read together: concurrent writers add to
# different ones instead of queueing on one. limits.py decides how many a limit writes to.
COUNTER_SHARDS = 16
Shards = tuple[Slots, ...]  # a counter's rows, by shard number (COUNTER_SHARDS of them)


class StoreUnavailable(ServiceUnavailable):
    problem_type = "urn:twilio-functions:problem:store-unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The state store cannot be reached; nothing was sent. Try again shortly.",
            title="State store unavailable",
            headers={"Retry-After": "5"},
        )


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Attempt:
    """One try at a create, kept with its key so that a retry can ask Twilio whether it
    happened: what was asked for (enough to recognise it in Twilio's lists) and when."""

    kind: Kind
    to: str
    sender: str  # the From number, or the Messaging Service SID
    content: str  # a digest of the message body; "" for calls
    started_at: float
    owner: str  # the key's digest; a create recorded under another owner is not ours


@dataclass(frozen=True)
class IdempotencyRecord:
    fingerprint: str
    expires_at: float
    lease_until: float  # while in flight: after this, the holder is presumed dead
    response: StoredResponse | None = None
    attempt: Attempt | None = None
    unknown: bool = False  # the attempt's answer was lost: Twilio may or may not have it


@dataclass(frozen=True)
class BroadcastRecord:
    id: str
    caller: str
    fingerprint: str
    body: str
    from_number: str | None
    messaging_service_sid: str | None
    total: int
    chunk_size: int
    rejected: int
    created_at: str
    cancelled: bool = False
    charged: bool = False  # the caller's quota was charged for every recipient

    @property
    def chunks(self) -> int:
        return -(-self.total // self.chunk_size)


def broadcast_finished(record: BroadcastRecord, results: int) -> bool:
    """Whether the broadcast will send nothing more, told from what the store holds (its
    orchestration's runtime status lives in Durable Functions, out of the store's reach):
    every recipient has a result (a chunk records one for each, sent or not, before it
    ends: broadcast_orchestration.broadcast_chunk, broadcasts.settle_chunk), or it was
    cancelled (no send goes out after the flag; a chunk under way records its remaining
    recipients `canceled` within minutes, and a purge waits for the last of those writes).
    One whose orchestration failed or never started is neither, until it is cancelled."""
    return record.cancelled or results >= record.total


@dataclass(frozen=True)
class ConversationMessage:
    """One message exchanged with a phone number: sent by a caller, or received from it."""

    sid: str
    direction: Direction  # outbound: a caller sent it; inbound: the number sent it
    from_: str
    to: str
    body: str
    at: float  # clock time: when it was sent or received
    media: tuple[tuple[str, str], ...] = ()  # (URL, content type; "" when unknown)
    messaging_service_sid: str | None = None


def conversation_position(message: ConversationMessage) -> str:
    """Where a message sorts in its conversation: newest first (inverted milliseconds),
    then by SID. Key-safe (digits, letters and `~`), and the same in every backend."""
    return f"{_LATEST_MS - round(message.at * 1000):013d}~{message.sid}"


_LATEST_MS = 10**13 - 1  # the year 2286


class ConversationPage(NamedTuple):
    messages: list[ConversationMessage]  # newest first
    after: str | None  # where the next page starts (opaque to callers); None: no more


class Versioned(NamedTuple):
    """A key's record as it is now, and an opaque version to write it back conditionally."""

    record: IdempotencyRecord | None
    version: str | None


@dataclass(frozen=True)
class Accepted:
    """A create Twilio accepted: the answer's body, and the write that records who made
    it (shared/deliveries.py), left to the caller to run beside settling the key."""

    body: dict[str, Any]
    record: Callable[[], None]


class Store(Protocol):
    # Whether a request waits on the network: then independent ones go side by side
    # (shared/parallel.py); in memory, a thread hand-off would cost more than it saves.
    remote: bool

    # Deliveries: each part is written once, never read first (a callback is one write).
    def delivery(self, kind: Kind, sid: str) -> Delivery | None:
        """The record folded from what was stored (delivery_status.fold)."""
        ...

    def record_created(self, kind: Kind, sid: str, created: DeliveryCreated) -> None: ...

    def record_status(self, kind: Kind, sid: str, event: StatusEvent) -> bool:
        """Store a status callback; False when this status was stored already."""
        ...

    # Voicemails (shared/voicemail.py): parts written once each, never read first.
    def record_call_parties(self, call_sid: str, parties: CallParties) -> None: ...

    def record_recording(self, call_sid: str, event: RecordingEvent) -> bool:
        """Store a recording status callback; False when this recording's status was
        stored already (a duplicate delivery)."""
        ...

    def voicemails(self, limit: int) -> list[Voicemail]:
        """The newest `limit` voicemails. Reads every stored one: for the local console
        and operators, never on a request path."""
        ...

    def update_key(
        self,
        scope: str,
        key: str,
        change: Callable[[IdempotencyRecord | None], IdempotencyRecord | None],
    ) -> Versioned:
        """Apply `change` to the key's record atomically (None: leave it as it is) and
        return the record as it is afterwards. `change` may run more than once; a new
        record is claimed with one conditional insert."""
        ...

    def replace_key(self, scope: str, key: str, record: IdempotencyRecord, version: str) -> bool:
        """Write `record` if the stored one is still at `version` (one request, no read)."""
        ...

    def update_counters(
        self,
        counters: Sequence[str],
        change: Callable[[Mapping[str, Shards]], Mapping[tuple[str, int], Slots] | None],
    ) -> None:
        """Read these counters' shards (a missing one reads as empty) in one request and
        write what `change` returns, by (counter, shard number), as one atomic write: all
        of them change or none (None: nothing to write). `change` may run more than once
        (on a lost race), and may wait on is_opted_out, which must not wait on this."""
        ...

    # Opt-outs: per recipient and sender (a From number or a Messaging Service SID), as
    # Twilio applies them; a send reads one (is_opted_out), never more.
    def add_opt_out(self, number: str, senders: Sequence[str]) -> None: ...

    def remove_opt_out(self, number: str, senders: Sequence[str]) -> None: ...

    # Expiry (shared/cleanup.py): each deletes what no request can use any more, unless
    # it changed meanwhile, and says how many records it deleted.
    def purge_keys(self, now: float) -> int:
        """Delete idempotency records that have expired (`expires_at` <= now)."""
        ...

    def purge_counters(self, idle_since: float) -> int:
        """Delete counters last written before `idle_since` (clock time)."""
        ...

    def purge_deliveries(self, unchanged_since: float) -> int:
        """Delete delivery records last written before `unchanged_since` (clock time)."""
        ...

    def purge_voicemails(self, unchanged_since: float) -> int:
        """Delete the voicemails of calls (who called, each recording) last written before
        `unchanged_since` (clock time); how many calls' were deleted."""
        ...

    def purge_broadcasts(self, unchanged_since: float) -> int:
        """Delete finished broadcasts (broadcast_finished) none of whose parts (record,
        chunks, results) was written since `unchanged_since` (clock time), each whole;
        how many were deleted. A running one stays, however old."""
        ...

    def is_opted_out(self, number: str, sender: str) -> bool: ...

    # Conversations (shared/conversations.py): what each caller exchanged with a number.
    def record_sent_message(self, caller: str, message: ConversationMessage) -> None:
        """`caller` sent `message` (to `message.to`): add it to the caller's view, and from
        now on show the caller what `message.to` sends (until purged, the message's `at`
        being the last send). One write, never a read first."""
        ...

    def record_inbound_message(self, message: ConversationMessage) -> bool:
        """Store a message received from `message.from_`, once per SID (False: stored
        already), and show it to every caller that had sent to that number."""
        ...

    def conversation(
        self, caller: str, number: str, after: str | None, limit: int
    ) -> ConversationPage:
        """`caller`'s messages with `number`, newest first: up to `limit` of them,
        starting after the position `after` of an earlier page (None: the newest)."""
        ...

    def purge_conversations(self, before: float) -> int:
        """Delete conversation messages sent or received before `before` (clock time)."""
        ...

    # Broadcasts: the record, its recipients in chunks, one result per recipient.
    def create_broadcast(self, record: BroadcastRecord) -> bool:
        """Insert the record unless one with this id exists (then False)."""
        ...

    def add_broadcast_chunks(self, broadcast_id: str, chunks: list[list[str]]) -> None: ...

    def forget_broadcast(self, broadcast_id: str) -> None: ...

    def broadcast(self, broadcast_id: str) -> BroadcastRecord | None: ...

    def broadcast_chunk(self, broadcast_id: str, chunk: int) -> list[str]: ...

    def update_broadcast(
        self, broadcast_id: str, change: Callable[[BroadcastRecord], BroadcastRecord]
    ) -> BroadcastRecord | None:
        """Apply `change` to the record atomically; None when there is no such broadcast."""
        ...

    def record_recipient_result(
        self, broadcast_id: str, index: int, result: dict[str, Any]
    ) -> None: ...

    def recipient_results(self, broadcast_id: str, offset: int, limit: int) -> list[dict[str, Any]]:
        """Results for recipients offset … offset+limit-1 that have one, in index order."""
        ...
