"""Camera URLs without their secrets, for API answers and log lines.

A camera URL may carry credentials in its authority (`rtsp://admin:pw@cam/`) or its query
(`?user=admin&password=pw`, `pwd=`, `passwd=`, a token or key): the config keeps them,
nothing shown to a client or written to a log does. User names stay, as h5stream shows them.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "*****"
# Query keys whose values are secrets (matched case-insensitively anywhere in the key).
_SECRET_KEYS = ("pass", "pwd", "secret", "token", "key", "auth", "sig")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'\"<>]+")


def redact(url: str) -> str:
    """`url` with the password of its authority and the values of secret query keys masked."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # malformed (e.g. a bad port or IPv6 bracket): show its scheme only
        return url.split("://", 1)[0] + "://" + MASK if "://" in url else MASK
    netloc = parts.netloc
    if password is not None:
        netloc = f"{parts.netloc.rsplit('@', 1)[0].split(':', 1)[0]}:{MASK}@{parts.netloc.rsplit('@', 1)[1]}"
    query = "&".join(_redact_field(field) for field in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_field(field: str) -> str:
    key, eq, _ = field.partition("=")
    if eq and any(word in unquote(key).lower() for word in _SECRET_KEYS):
        return f"{key}={MASK}"
    return field


def redact_urls(text: str) -> str:
    """Every URL in `text` redacted (FFmpeg's own messages may name the URL it opened)."""
    return _URL_IN_TEXT.sub(lambda m: redact(m[0]), text) if "://" in text else text


class RedactingFormatter(logging.Formatter):
    """Log lines, tracebacks included, with the URLs in them redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_urls(super().format(record))
