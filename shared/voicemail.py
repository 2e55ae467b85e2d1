"""Voicemails: what Twilio told us about a recording left on an inbound call.

A voicemail is kept as parts, each written once and never read first, as deliveries are
(shared/delivery_status.py): who called whom (from the <Record> action, the one request
of the recording that names both numbers) and one part per recording status callback,
stored once per (RecordingSid, RecordingStatus) so that Twilio's duplicate deliveries
change nothing. The recording itself stays at Twilio: referenced by SID and URL, never
downloaded by the app.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# RecordingStatus values Twilio sends (recordingStatusCallbackEvent: in-progress,
# completed, absent; failed when the recording could not be made).
RECORDING_STATUSES = ("in-progress", "completed", "absent", "failed")
_RANK = {"in-progress": 0, "completed": 1, "absent": 1, "failed": 1}


@dataclass(frozen=True)
class CallParties:
    """Who called (`from_number`) which of the account's numbers (`to_number`)."""

    from_number: str
    to_number: str
    at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class RecordingEvent:
    """One recording status callback."""

    recording_sid: str
    status: str
    at: str  # ISO 8601, UTC: when it arrived
    url: str | None = None
    duration: int | None = None  # seconds
    error_code: int | None = None


@dataclass(frozen=True)
class Voicemail:
    call_sid: str
    recording_sid: str
    status: str
    at: str  # when its first callback arrived
    url: str | None = None
    duration: int | None = None
    error_code: int | None = None
    from_number: str | None = None  # None: the <Record> action never reached us
    to_number: str | None = None


def fold(
    call_sid: str, parties: CallParties | None, events: Iterable[RecordingEvent]
) -> list[Voicemail]:
    """The call's voicemails (one per recording), from its stored parts in any order: the
    most advanced status wins, and a URL or duration once known stays known."""
    by_recording: dict[str, list[RecordingEvent]] = {}
    for event in events:
        by_recording.setdefault(event.recording_sid, []).append(event)
    found = []
    for recording_sid, recorded in by_recording.items():
        recorded.sort(key=lambda e: (_RANK.get(e.status, 0), e.at))
        last = recorded[-1]
        found.append(
            Voicemail(
                call_sid=call_sid,
                recording_sid=recording_sid,
                status=last.status,
                at=min(e.at for e in recorded),
                url=next((e.url for e in reversed(recorded) if e.url), None),
                duration=next(
                    (e.duration for e in reversed(recorded) if e.duration is not None), None
                ),
                error_code=last.error_code,
                from_number=parties.from_number if parties else None,
                to_number=parties.to_number if parties else None,
            )
        )
    return found


def newest_first(voicemails: Iterable[Voicemail], limit: int) -> list[Voicemail]:
    return sorted(voicemails, key=lambda v: (v.at, v.recording_sid), reverse=True)[:limit]
