"""The local host's access log masks phone numbers in request lines, and nothing else."""

from __future__ import annotations

import logging

import pytest

from devhost.access_log import NumbersMasked, access_logger, masked

LINE = '127.0.0.1 [06/Dec/2026:20:41:56 +0000] "{}" 200 242 "-" "curl/7.88.1"'


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("GET /api/conversations/+14155550142 HTTP/1.1", "GET /api/conversations/+14*******42 HTTP/1.1"),
        ("GET /api/conversations/%2B14155550142 HTTP/1.1", "GET /api/conversations/%2B*********42 HTTP/1.1"),
        ("GET /api/conversations/4155550142?limit=2 HTTP/1.1", "GET /api/conversations/415*****42?limit=2 HTTP/1.1"),
        # A SID's digits, a time, a short code and a limit are not numbers to hide.
        ("GET /api/messages/SMb898567f052d43e2aa7134736f82fba9 HTTP/1.1", None),
        ("GET /api/conversations/12345?limit=100 HTTP/1.1", None),
        ("GET /api/health HTTP/1.1", None),
    ],
)  # fmt: skip
def test_numbers_in_the_request_line_are_masked(request_line: str, expected: str | None) -> None:
    assert masked(LINE.format(request_line)) == LINE.format(expected or request_line)


def test_the_rest_of_the_line_is_left_alone() -> None:
    line = '127.0.0.1 [t] "GET / HTTP/1.1" 200 12345678 "-" "agent +14155550142"'
    assert masked(line) == line  # only the request line is the caller's input


def test_the_access_logger_masks_what_it_logs(caplog: pytest.LogCaptureFixture) -> None:
    logger = access_logger()
    assert access_logger() is logger
    assert [type(f) for f in logger.filters].count(NumbersMasked) == 1  # added once
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info('%s "%s" %d', "127.0.0.1", "GET /api/conversations/+447700900123 HTTP/1.1", 200)
    assert caplog.messages == ['127.0.0.1 "GET /api/conversations/+44********23 HTTP/1.1" 200']
