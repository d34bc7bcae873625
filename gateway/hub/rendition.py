"""Which stream a client watches: the camera's own, or its H.264 rendition.

An H.265 stream goes as it is to every client that takes H.265. A client that does not
(Firefox, most Linux browsers, older Chrome) watches the stream's H.264 rendition: a
second Stream, fed by one transcode of the first, made only while such a client watches
(`Stream.rendition`, None when the source's rendition is off).
"""

from __future__ import annotations

from gateway.hub.packet import StreamParams
from gateway.hub.stream import Stream


class NoRendition(Exception):
    """The stream is H.265, the client cannot take it, and the source has no H.264 rendition;
    the message says so, and how to turn it on."""


def for_client(stream: Stream, params: StreamParams, takes_hevc: bool) -> Stream:
    """The stream to serve a client of `stream` (whose parameters are `params`): the stream
    itself when the client takes its codec, else its H.264 rendition (NoRendition if none).

    The caller holds `stream` (acquire) to learn `params`; when another stream comes back it
    acquires that one and releases `stream` (a rendition holds its source itself)."""
    if takes_hevc or params.video is None or not params.video.hevc:
        return stream
    if stream.rendition is None:
        raise NoRendition(
            f"stream {stream.label} is H.265, which this client cannot play, and its H.264 rendition is off"
        )
    return stream.rendition
