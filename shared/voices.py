"""The voices <Say> takes, per Twilio's TwiML docs: man, woman, Polly.* and Google.*.

`alice` is not among them: Twilio's docs no longer list it, so a request for it is a 400
here rather than whatever Twilio makes of it. Settings (TWIML_DEFAULT_VOICE), the
TwiML and MakeCall parameters and the OpenAPI document all read this one list.
"""

from __future__ import annotations

import re

ACCEPTED_VOICES = "man, woman, Polly.<Name> or Google.<name>"
_BASIC_VOICES = frozenset({"man", "woman"})
_NAMED_VOICE = re.compile(r"(Polly|Google)\.[A-Za-z0-9_.-]{1,64}")


def is_voice(value: str) -> bool:
    return value in _BASIC_VOICES or _NAMED_VOICE.fullmatch(value) is not None
