"""The local host's access log, with phone numbers masked.

GET /api/conversations/{number} carries a phone number in its path, and the access log
prints each request line; the app never logs a whole number, and neither should the
host that runs it. A number here is a run of 7 to 15 digits, after an optional `+`
(raw or %2B), that is not part of a longer word: a SID's hex digits never match.
"""

from __future__ import annotations

import logging
import re

from shared.phone import mask

ACCESS_LOGGER = "devhost.access"
_NUMBER = re.compile(r"(?<![0-9A-Za-z%])(?:\+|%2[Bb])?[0-9]{7,15}(?![0-9A-Za-z])")


def masked(line: str) -> str:
    """`line` with every number in its first quoted part (the request line) masked."""
    start = line.find('"')
    end = line.find('"', start + 1)
    if start < 0 or end < 0:
        return line
    request = _NUMBER.sub(lambda found: mask(found.group()), line[start:end])
    return line[:start] + request + line[end:]


class NumbersMasked(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = masked(record.getMessage())
        record.args = None
        return True


def access_logger() -> logging.Logger:
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, NumbersMasked) for f in logger.filters):
        logger.addFilter(NumbersMasked())
    return logger
