"""Inbound calls: forward to a configured number; else, or when nobody answers, voicemail.

What Twilio requests, in order (every request signed, every URL ours and absolute):
1. IncomingCall, the number's voice webhook: <Dial> INBOUND_FORWARD_NUMBER with a timeout
   and DialAction as its action; without a forward number, the voicemail at once.
2. DialAction: DialCallStatus `completed` or `answered`: <Hangup/>; anything else (busy,
   no-answer, failed, canceled) gets the voicemail.
3. The voicemail: the greeting (<Say>, or <Play> for a URL), <Record> with RecordAction
   as its action and RecordingStatus as its recording status callback, then <Hangup/>
   (Twilio skips the action after an empty recording and goes on to the next verb).
4. RecordAction: who called whom is stored; <Hangup/>. Without an action Twilio would
   request the current document again: the greeting and a new recording, in a loop.
5. RecordingStatus: the recording status callback, stored once per (RecordingSid, status).
No HTTP here: the handlers in IncomingCall/ translate.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from shared import clock
from shared.errors import Forbidden, InvalidSetting
from shared.settings import Settings
from shared.store import Store, StoreUnavailable
from shared.twiml import message_segment
from shared.validation import Errors
from shared.voicemail import RECORDING_STATUSES, CallParties, RecordingEvent
from shared.webhooks import function_url

INCOMING_CALL_ROUTE = "IncomingCall"
DIAL_ACTION_ROUTE = "IncomingCall/DialAction"
RECORD_ACTION_ROUTE = "IncomingCall/RecordAction"
RECORDING_STATUS_ROUTE = "IncomingCall/RecordingStatus"
FORWARD_SETTING = "INBOUND_FORWARD_NUMBER"
# DialCallStatus values after which the caller has spoken to someone.
ANSWERED = ("completed", "answered")

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")
_WORD = re.compile(r"[a-z][a-z-]{0,31}")
_DIGITS = re.compile(r"[0-9]{1,9}")
# A phone number, `client:name`, `sip:…` or `anonymous`: printable ASCII, no spaces.
_PARTY = re.compile(r"[!-~]{1,128}")
# Printable ASCII without space and backslash: shown as a link, read the same everywhere.
_URL = re.compile(r"https?://[!-\[\]-~]{1,2040}")

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=8)
def forward_number(settings: Settings) -> str | None:
    """INBOUND_FORWARD_NUMBER once it passed the policy MakeCall destinations pass: a
    forward is an outbound leg billed to the account. A number the policy refuses is a
    misconfiguration (500 naming the setting and the rule), never a forward."""
    if not settings.forward_number:
        return None
    from shared import policy
    from shared.phone import InvalidPhoneNumber, to_e164

    try:
        number = to_e164(settings.forward_number)
    except InvalidPhoneNumber:
        raise InvalidSetting(
            FORWARD_SETTING, "an E.164 phone number such as +14155550100"
        ) from None
    try:
        policy.check_destination(number, settings, "call")
    except Forbidden as refused:
        rule = refused.extra["rule"]
        error = InvalidSetting(FORWARD_SETTING, f"a number calls may go to ({refused.detail})")
        error.extra["rule"] = rule
        raise error from None
    return number.e164


def check_settings(settings: Settings) -> None:
    """What load_settings cannot check without phonenumbers: for a local host's start."""
    forward_number(settings)


def incoming_call(settings: Settings) -> str:
    response = VoiceResponse()
    forward = forward_number(settings)
    if forward is None:
        _voicemail(response, settings)
    else:
        response.dial(
            forward,
            action=function_url(settings, DIAL_ACTION_ROUTE),
            method="POST",
            timeout=settings.dial_timeout,
        )
    return str(response)


def after_dial(settings: Settings, fields: Mapping[str, Any]) -> str:
    reader = Errors()
    status = _field(fields, reader, "DialCallStatus", _WORD)
    reader.check()
    response = VoiceResponse()
    if status in ANSWERED:
        response.hangup()
    else:
        logger.info("Forward not answered (%s): voicemail", status)
        _voicemail(response, settings)
    return str(response)


def after_recording(store: Store, fields: Mapping[str, Any]) -> str:
    """Remember who called whom (the recording's callback does not say); then hang up.
    The caller is done either way: a store that is down costs the numbers, not the call."""
    reader = Errors()
    call_sid = _field(fields, reader, "CallSid", _CALL_SID)
    from_number = _field(fields, reader, "From", _PARTY, required=False)
    to_number = _field(fields, reader, "To", _PARTY, required=False)
    reader.check()
    assert call_sid is not None
    parties = CallParties(from_number or "", to_number or "", clock.iso_now())
    try:
        store.record_call_parties(call_sid, parties)
    except StoreUnavailable:
        logger.error("Could not record who left voicemail on call %s", call_sid)
    response = VoiceResponse()
    response.hangup()
    return str(response)


def apply_recording_status(store: Store, fields: Mapping[str, Any]) -> None:
    """Record one recording status callback; a duplicate delivery changes nothing."""
    reader = Errors()
    call_sid = _field(fields, reader, "CallSid", _CALL_SID)
    recording_sid = _field(fields, reader, "RecordingSid", _RECORDING_SID)
    status = _field(fields, reader, "RecordingStatus", _WORD)
    url = _field(fields, reader, "RecordingUrl", _URL, required=False)
    duration = _field(fields, reader, "RecordingDuration", _DIGITS, required=False)
    error_code = _field(fields, reader, "ErrorCode", _DIGITS, required=False)
    reader.check()
    assert call_sid is not None and recording_sid is not None and status is not None
    if status not in RECORDING_STATUSES:
        logger.info("Recording %s callback with a status we do not track", recording_sid)
        return
    event = RecordingEvent(
        recording_sid=recording_sid,
        status=status,
        at=clock.iso_now(),
        url=url,
        duration=int(duration) if duration else None,
        error_code=int(error_code) if error_code else None,
    )
    fresh = store.record_recording(call_sid, event)
    logger.info(
        "Recording %s of call %s: %s%s",
        recording_sid,
        call_sid,
        status,
        "" if fresh else " (a repeat)",
    )


def _voicemail(response: VoiceResponse, settings: Settings) -> None:
    # Checked when settings load (VOICEMAIL_GREETING): a URL is played, text is spoken.
    greeting = message_segment(Errors(), "VOICEMAIL_GREETING", settings.voicemail_greeting)
    if greeting.kind == "play":
        response.play(greeting.value)
    else:
        response.say(greeting.value, voice=settings.twiml_default_voice)
    response.record(
        action=function_url(settings, RECORD_ACTION_ROUTE),
        method="POST",
        max_length=settings.voicemail_max_seconds,
        recording_status_callback=function_url(settings, RECORDING_STATUS_ROUTE),
        recording_status_callback_method="POST",
        transcribe=True if settings.voicemail_transcribe else None,
    )
    response.hangup()


def _field(
    fields: Mapping[str, Any],
    reader: Errors,
    name: str,
    pattern: re.Pattern[str],
    *,
    required: bool = True,
) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        if required:
            reader.error(name, "is required")
        return None
    if not isinstance(value, str):
        reader.error(name, "must be given once")
        return None
    if not pattern.fullmatch(value):
        reader.error(name, "is not in the form Twilio sends")
        return None
    return value
