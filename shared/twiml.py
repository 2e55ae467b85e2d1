"""Voice TwiML: what a call says or plays, validated, rendered with Twilio's builders.

Parameters follow the old Message twimlet: `message` (or `Message[0]`, `Message[1]`, …;
a value that is an http(s) URL is played, anything else is spoken), `voice`, `language`
and `loop`. MakeCall validates with the same rules before Twilio ever fetches the URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from twilio.twiml.voice_response import VoiceResponse

from shared.urls import parse_public_url
from shared.validation import Errors
from shared.voices import ACCEPTED_VOICES, is_voice

MAX_SAY_CHARACTERS = 4096  # Twilio's limit for the text of one <Say>
MAX_SEGMENTS = 20
MAX_LOOP = 10
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}")
_INDEXED_MESSAGE = re.compile(r"Message\[([0-9]{1,2})\]")
_LOOP = re.compile(r"[0-9]{1,2}")  # ASCII digits: str.isdigit() also takes "²"
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Segment:
    kind: Literal["say", "play"]
    value: str


@dataclass(frozen=True)
class Speech:
    segments: tuple[Segment, ...]
    voice: str | None = None
    language: str | None = None
    loop: int = 1


def check_voice_options(reader: Errors, voice: str | None, language: str | None) -> None:
    if voice is not None and not is_voice(voice):
        reader.error("voice", f"must be {ACCEPTED_VOICES}")
    if language is not None and not _LANGUAGE.fullmatch(language):
        reader.error("language", "must be a language tag such as en-US")


def speech_from_params(
    params: Mapping[str, str], default_message: str, default_voice: str
) -> Speech:
    """Parse TwiML request parameters; unknown ones are Twilio's own and ignored."""
    indexed = sorted(
        (int(match.group(1)), key) for key in params if (match := _INDEXED_MESSAGE.fullmatch(key))
    )
    reader = Errors()
    if indexed and "message" in params:
        reader.error("message", "cannot be combined with Message[n]")
    if len(indexed) > MAX_SEGMENTS:
        reader.error("Message", f"at most {MAX_SEGMENTS} Message[n] parameters")
    texts = [(key, params[key]) for _, key in indexed] or [
        ("message", params.get("message", default_message))
    ]
    segments = tuple(_segment(field, text, reader) for field, text in texts)
    voice = params.get("voice", default_voice)
    language = params.get("language")
    check_voice_options(reader, voice, language)
    loop = _loop(params.get("loop"), reader)
    reader.check()
    return Speech(segments=segments, voice=voice, language=language, loop=loop)


def played_urls(speech: Speech) -> list[str]:
    """What Twilio would fetch to <Play>: policy decides whether those hosts may be used."""
    return [segment.value for segment in speech.segments if segment.kind == "play"]


def message_segment(reader: Errors, field: str, text: str) -> Segment:
    """One message as MakeCall and TwiML read it: a URL is played, other text spoken."""
    return _segment(field, text, reader)


def render(speech: Speech) -> str:
    response = VoiceResponse()
    loop = speech.loop if speech.loop != 1 else None
    for segment in speech.segments:
        if segment.kind == "play":
            response.play(segment.value, loop=loop)
        else:
            response.say(segment.value, voice=speech.voice, language=speech.language, loop=loop)
    return str(response)


def _segment(field: str, text: str, reader: Errors) -> Segment:
    if not text.strip():
        reader.error(field, "must not be empty")
    elif len(text) > MAX_SAY_CHARACTERS:
        reader.error(field, f"must be at most {MAX_SAY_CHARACTERS} characters")
    elif _NOT_IN_XML.search(text):
        # XML 1.0 cannot carry these even escaped: Twilio would fail to parse the document.
        reader.error(field, "must not contain control characters")
    if text.startswith(("http://", "https://")):
        if parse_public_url(text, schemes=("http", "https")) is None:
            reader.error(field, "is not a valid URL")
        return Segment("play", text)
    return Segment("say", text)


def _loop(raw: str | None, reader: Errors) -> int:
    if raw is None:
        return 1
    if not _LOOP.fullmatch(raw) or not 1 <= int(raw) <= MAX_LOOP:
        reader.error("loop", f"must be a whole number from 1 to {MAX_LOOP}")
        return 1
    return int(raw)
