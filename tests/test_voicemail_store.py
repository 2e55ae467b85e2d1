"""Voicemails in the store: the same contract against the in-memory store and Azurite."""

from __future__ import annotations

from shared.store import Store
from shared.voicemail import CallParties, RecordingEvent, Voicemail
from tests.conftest import FakeClock

CALL = "CA" + "a" * 32
OTHER_CALL = "CA" + "b" * 32
RECORDING = "RE" + "1" * 32
URL = f"https://api.twilio.com/2010-04-01/Accounts/AC{'0' * 32}/Recordings/{RECORDING}"


def completed(at: str, recording: str = RECORDING, duration: int = 7) -> RecordingEvent:
    return RecordingEvent(recording, "completed", at, url=URL, duration=duration)


def test_a_duplicate_delivery_is_stored_once(store: Store) -> None:
    assert store.record_recording(CALL, completed("t1")) is True
    assert store.record_recording(CALL, completed("t2", duration=9)) is False
    assert store.voicemails(10) == [
        Voicemail(CALL, RECORDING, "completed", "t1", url=URL, duration=7)
    ]


def test_who_called_joins_the_recording_whichever_arrives_first(store: Store) -> None:
    store.record_recording(CALL, completed("t2"))
    store.record_call_parties(CALL, CallParties("+14155550123", "+15005550006", "t1"))
    store.record_call_parties(CALL, CallParties("+14155550123", "+15005550006", "t3"))  # again
    assert store.voicemails(10) == [
        Voicemail(
            CALL, RECORDING, "completed", "t2", url=URL, duration=7,
            from_number="+14155550123", to_number="+15005550006",
        )
    ]  # fmt: skip


def test_a_later_status_wins_and_keeps_what_was_known(store: Store) -> None:
    store.record_recording(CALL, completed("t2"))
    store.record_recording(CALL, RecordingEvent(RECORDING, "in-progress", "t1"))
    [voicemail] = store.voicemails(10)
    assert (voicemail.status, voicemail.at, voicemail.url) == ("completed", "t1", URL)


def test_newest_first_and_limited(store: Store) -> None:
    second = "RE" + "2" * 32
    store.record_recording(CALL, completed("t1"))
    store.record_recording(OTHER_CALL, completed("t3", recording=second))
    store.record_call_parties(OTHER_CALL, CallParties("anonymous", "+15005550006", "t2"))
    assert [v.recording_sid for v in store.voicemails(10)] == [second, RECORDING]
    assert [(v.recording_sid, v.from_number) for v in store.voicemails(1)] == [
        (second, "anonymous")
    ]


def test_parties_alone_are_no_voicemail(store: Store) -> None:
    store.record_call_parties(CALL, CallParties("+14155550123", "+15005550006", "t1"))
    assert store.voicemails(10) == []


def test_a_calls_voicemail_goes_whole_once_unchanged_since(
    store: Store, fake_clock: FakeClock
) -> None:
    t0 = fake_clock.time
    parties_only = "CA" + "c" * 32
    store.record_call_parties(CALL, CallParties("+14155550123", "+15005550006", "t1"))
    store.record_recording(CALL, completed("t1"))
    store.record_recording(OTHER_CALL, RecordingEvent(RECORDING, "in-progress", "t1"))
    store.record_call_parties(parties_only, CallParties("anonymous", "+15005550006", "t1"))
    fake_clock.advance(10)
    assert store.record_recording(CALL, completed("t2")) is False  # a repeat is no change
    store.record_recording(OTHER_CALL, completed("t2"))  # a late callback is one
    assert store.purge_voicemails(t0) == 0  # written at that very moment: kept
    assert store.purge_voicemails(t0 + 5) == 2  # CALL and parties_only, each whole
    assert store.voicemails(10) == [
        Voicemail(OTHER_CALL, RECORDING, "completed", "t1", url=URL, duration=7)
    ]
    assert store.purge_voicemails(t0 + 5) == 0
    # Who called went with each call: a recording arriving later has no caller to join.
    fake_clock.advance(10)
    store.record_recording(parties_only, completed("t3"))
    assert [(v.call_sid, v.from_number) for v in store.voicemails(10)] == [
        (parties_only, None), (OTHER_CALL, None),
    ]  # fmt: skip
    assert store.purge_voicemails(t0 + 11) == 1  # OTHER_CALL; parties_only changed since
    assert [v.call_sid for v in store.voicemails(10)] == [parties_only]
