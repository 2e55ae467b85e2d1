"""URLs we hand Twilio to fetch: only ones every parser reads the same way.

Python's urlsplit and a browser-style (WHATWG) parser, like the one a fetcher may use,
disagree on some inputs: `https://evil.example\\@allowed.host/` is allowed.host to
urlsplit and evil.example to WHATWG (backslash is a slash there); tabs and newlines are
silently removed by WHATWG; userinfo and percent-encoded hosts hide the real host. So a
URL is accepted only when none of that is present and its host is a plain lower-case
DNS name, which both parsers then read identically; allowlists compare hosts exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
# DNS labels; the last one starts with a letter, so that no parser reads the host as an
# IPv4 address in one of its spellings (127.1, 0x7f.1, 2130706433).
_HOST = re.compile(
    r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_PORT = re.compile(r"[0-9]{1,5}")
# Printable ASCII without space and backslash; anything else is read differently somewhere.
_UNAMBIGUOUS = re.compile(r"[!-\[\]-~]+")


@dataclass(frozen=True)
class PublicUrl:
    scheme: str
    host: str  # lower case, no trailing dot
    url: str  # the text as given (it is what Twilio will request)


def parse_public_url(text: str, *, schemes: tuple[str, ...] = ("https",)) -> PublicUrl | None:
    """The URL if it is unambiguous, absolute, one of `schemes` and names a DNS host."""
    if len(text) > MAX_URL_LENGTH or not _UNAMBIGUOUS.fullmatch(text):
        return None
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in schemes or not text[len(parts.scheme) :].startswith("://"):
        return None
    authority = parts.netloc
    if "@" in authority or "%" in authority or not authority:
        return None
    host, _, port = authority.partition(":")
    if port and (not _PORT.fullmatch(port) or not 0 < int(port) < 65536):
        return None
    host = host.lower()
    if not _HOST.fullmatch(host):
        return None
    return PublicUrl(scheme=scheme, host=host, url=text)


def is_hostname(text: str) -> bool:
    """A plain lower-case DNS name, as allowlist entries must be."""
    return bool(_HOST.fullmatch(text))
