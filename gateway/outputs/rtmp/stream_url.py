"""What an RTMP client names in connect and publish/play: the app, the stream's token and
the query with the caller's credentials.

`rtmp://host:8935/live/{token}?user=NAME&password=PASS`: FFmpeg sends app `live` and the
stream name `{token}?user=...`; OBS-style clients that take a server URL and a stream key
put the query on the app (and tcUrl) instead. Both are read; the stream name's query wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

APP = "live"


@dataclass(frozen=True, slots=True)
class StreamName:
    token: str
    query: dict[str, str]


def split_query(text: str) -> tuple[str, dict[str, str]]:
    """`name?a=1&b=2` -> (`name`, {a: 1, b: 2})."""
    name, _, query = text.partition("?")
    return name, dict(parse_qsl(query, keep_blank_values=True))


def connect_query(app: str, tc_url: str) -> tuple[str, dict[str, str]]:
    """(the app name, the query given on the app or the tcUrl) of a connect command."""
    name, query = split_query(app)
    if not query and "?" in tc_url:
        query = split_query(tc_url)[1]
    return name.strip("/"), query


def stream_name(name: str, connect: dict[str, str]) -> StreamName:
    """The publish/play name's token and its query over the connect's."""
    token, query = split_query(name)
    return StreamName(token, {**connect, **query})
