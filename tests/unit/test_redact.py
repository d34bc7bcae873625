"""redact.py: camera URLs without their secrets, in answers and log lines."""

from __future__ import annotations

import logging
import sys

import pytest

from gateway.redact import RedactingFormatter, redact, redact_urls

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("url,shown", [
    ("rtsp://cam/stream?user=admin&password=secret", "rtsp://cam/stream?user=admin&password=*****"),
    ("rtsp://cam/s?pwd=secret&channel=1&PassWd=secret", "rtsp://cam/s?pwd=*****&channel=1&PassWd=*****"),
    ("rtsp://cam/s?passwd=secret", "rtsp://cam/s?passwd=*****"),
    ("rtsp://admin:secret@cam:554/s", "rtsp://admin:*****@cam:554/s"),
    ("rtsp://admin:se%40cret@[::1]:554/s?access_token=secret", "rtsp://admin:*****@[::1]:554/s?access_token=*****"),
    ("http://cam/live.flv?api%4Bey=secret", "http://cam/live.flv?api%4Bey=*****"),
    ("rtsp://admin@cam/s?channel=1&subtype=0", "rtsp://admin@cam/s?channel=1&subtype=0"),  # nothing secret
    ("rtsp://cam/s", "rtsp://cam/s"),
    ("rtsp://admin:secret@[::1/s", "rtsp://*****"),  # malformed: nothing but its scheme
])
def test_redact_masks_passwords_in_the_authority_and_the_query(url, shown):
    assert redact(url) == shown


def test_every_url_in_a_log_line_is_redacted_tracebacks_too():
    assert redact_urls("open 'rtsp://a:secret@cam/s?pwd=secret' failed; tcp://cam:554?timeout=0") == (
        "open 'rtsp://a:*****@cam/s?pwd=*****' failed; tcp://cam:554?timeout=0"
    )
    try:
        raise OSError("Connection refused: 'rtsp://cam/s?password=secret'")
    except OSError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "opening %s", ("rtsp://u:secret@cam/",), True)
        record.exc_info = sys.exc_info()
    line = RedactingFormatter("%(message)s").format(record)
    assert "secret" not in line and "rtsp://u:*****@cam/" in line and "password=*****" in line
