from __future__ import annotations

import pytest

from shared.errors import ValidationFailed
from shared.twiml import Segment, Speech, render, speech_from_params

XML = '<?xml version="1.0" encoding="UTF-8"?>'
DEFAULT = "Hello from Twilio Functions."


def speech(params: dict[str, str]) -> Speech:
    return speech_from_params(params, DEFAULT, "woman")


def errors(params: dict[str, str]) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as raised:
        speech(params)
    result: list[dict[str, str]] = raised.value.extra["errors"]
    return result


def test_default_message_in_the_tutorials_voice() -> None:
    assert render(speech({})) == f'{XML}<Response><Say voice="woman">{DEFAULT}</Say></Response>'


def test_user_text_is_escaped() -> None:
    xml = render(speech({"message": 'Tom & "Jerry" <script>'}))
    assert xml == (
        f'{XML}<Response><Say voice="woman">Tom &amp; "Jerry" &lt;script&gt;</Say></Response>'
    )


def test_voice_language_and_loop() -> None:
    xml = render(
        speech({"message": "Hola", "voice": "Polly.Conchita", "language": "es-ES", "loop": "2"})
    )
    assert xml == (
        f'{XML}<Response><Say language="es-ES" loop="2" voice="Polly.Conchita">Hola</Say></Response>'
    )


def test_twimlet_messages_in_index_order_urls_are_played() -> None:
    params = {
        "Message[10]": "Goodbye",
        "Message[0]": "Hello",
        "Message[2]": "https://example.com/tone.mp3",
        "CallSid": "CA123",  # Twilio's own parameters are ignored
    }
    result = speech(params)
    assert result.segments == (
        Segment("say", "Hello"),
        Segment("play", "https://example.com/tone.mp3"),
        Segment("say", "Goodbye"),
    )
    assert render(result) == (
        f'{XML}<Response><Say voice="woman">Hello</Say>'
        "<Play>https://example.com/tone.mp3</Play>"
        '<Say voice="woman">Goodbye</Say></Response>'
    )


def test_plain_http_audio_is_played_too() -> None:
    xml = render(speech({"Message[0]": "http://example.com/tone.mp3"}))
    assert xml == f"{XML}<Response><Play>http://example.com/tone.mp3</Play></Response>"


def test_say_text_up_to_twilios_limit_is_accepted() -> None:
    assert speech({"message": "a" * 4096}).segments == (Segment("say", "a" * 4096),)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"message": "a" * 4097}, [{"field": "message", "message": "must be at most 4096 characters"}]),
        ({"message": "  "}, [{"field": "message", "message": "must not be empty"}]),
        ({"voice": "robot"}, [{"field": "voice", "message": "must be man, woman, Polly.<Name> or Google.<name>"}]),
        ({"voice": "alice"}, [{"field": "voice", "message": "must be man, woman, Polly.<Name> or Google.<name>"}]),
        ({"language": "English!"}, [{"field": "language", "message": "must be a language tag such as en-US"}]),
        ({"loop": "0"}, [{"field": "loop", "message": "must be a whole number from 1 to 10"}]),
        ({"loop": "many"}, [{"field": "loop", "message": "must be a whole number from 1 to 10"}]),
        ({"Message[0]": "https://"}, [{"field": "Message[0]", "message": "is not a valid URL"}]),
        ({"message": "hi", "Message[0]": "x"}, [{"field": "message", "message": "cannot be combined with Message[n]"}]),
    ],
)  # fmt: skip
def test_bad_parameters_are_reported(
    params: dict[str, str], expected: list[dict[str, str]]
) -> None:
    assert errors(params) == expected


def test_too_many_segments() -> None:
    params = {f"Message[{i}]": "x" for i in range(21)}
    assert errors(params) == [{"field": "Message", "message": "at most 20 Message[n] parameters"}]


def test_exactly_twenty_segments_are_accepted() -> None:
    params = {f"Message[{i}]": f"part {i}" for i in range(20)}
    assert speech(params).segments == tuple(Segment("say", f"part {i}") for i in range(20))


@pytest.mark.parametrize(("raw", "loop"), [("1", None), ("10", "10")])
def test_loop_from_1_to_10_is_accepted_and_played_urls_loop_too(raw: str, loop: str | None) -> None:
    xml = render(speech({"Message[0]": "https://example.com/tone.mp3", "loop": raw}))
    attribute = f' loop="{loop}"' if loop else ""
    assert xml == f"{XML}<Response><Play{attribute}>https://example.com/tone.mp3</Play></Response>"


@pytest.mark.parametrize(
    "voice", ["Polly.Joanna>", "my Polly.Joanna", "Polly.", "woman ", "xwoman", "Google.a b"]
)
def test_a_voice_must_match_the_whole_pattern(voice: str) -> None:
    message = "must be man, woman, Polly.<Name> or Google.<name>"
    assert errors({"voice": voice}) == [{"field": "voice", "message": message}]
