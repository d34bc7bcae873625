"""HLS answers on the lean HTTP front: their headers, the JSON errors, and the answers a
stream gives every client alike, made once (HlsAnswers).

100 LL-HLS players make ~970 requests a second, nearly all for the same few files: each
new part (asked by every player within ~200 ms) and the playlist that names it. So a
part's answer is made once for all its clients, and each playlist rendered once per
segmenter change. These are HTTP answers, so the HTTP side keeps them, not the segmenter:
HlsAnswers is the stream's output beside its segmenter (registered in app.py), found by a
request with the one lookup it makes anyway.
"""

from __future__ import annotations

import weakref
from typing import Any

from gateway.auth import AuthError
from gateway.formats.video_transcode import RenditionShape
from gateway.hub.output import OutputCounts
from gateway.hub.stream import Stream
from gateway.outputs.hls.playlist import master_pieces, media_pieces
from gateway.outputs.hls.segmenter import HlsSegmenter
from gateway.web.errors import ApiError, error_json
from gateway.web.front import LeanResponse, header_lines

PLAYLIST = "application/vnd.apple.mpegurl"
HEADERS = {"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
HEADER_LINES = header_lines(HEADERS)


def playlist(body: bytes) -> LeanResponse:
    return LeanResponse(200, PLAYLIST, body, HEADER_LINES)


def media(data: bytes, content_type: str = "video/mp4") -> LeanResponse:
    return LeanResponse(200, content_type, data, HEADER_LINES)


def error_response(e: AuthError | ApiError) -> LeanResponse:
    """The REST API's JSON error: 401 for AuthError, else the ApiError's status."""
    status, reason = (401, str(e)) if isinstance(e, AuthError) else (e.status, e.reason)
    return LeanResponse(status, "application/json; charset=utf-8", error_json(reason), HEADER_LINES)


def internal_error() -> LeanResponse:
    return error_response(ApiError(500, "internal error (see the gateway log)"))


class HlsAnswers:
    """One stream's HLS answers that are the same for every client: each part's response,
    made at its first request, and each playlist rendered once per segmenter version, as
    pieces cut where the credential goes (a request's playlist is then one join).
    It also counts the stream's HLS requests for /metrics (http.py's `answer`)."""

    metric_name = "hls"

    def __init__(self, seg: HlsSegmenter):
        self.seg = seg
        self.requests = 0
        self.held = 0  # requests answered later: a blocking playlist or part, a TS segment being made
        self.bytes_out = 0
        # By segment msn, then part index; a segment's entry goes with the segment (finalize),
        # so answers live exactly as long as the media they carry.
        self._parts: dict[int, dict[int, LeanResponse]] = {}
        self._playlists: dict[str, tuple[int, list[bytes]]] = {}  # by variant or "master": (version, pieces)

    @classmethod
    def of(cls, stream: Stream) -> HlsAnswers:
        """The output registry's factory: the answers of the stream's segmenter."""
        return cls(stream.output(HlsSegmenter))

    def part(self, msn: int, index: int) -> LeanResponse | None:
        """The answer for part `index` of segment `msn` if the segmenter has it."""
        s = self.seg.segment(msn)
        if s is None or index >= len(s.parts):
            return None
        made = self._parts.get(msn)
        if made is None:
            made = self._parts[msn] = {}
            weakref.finalize(s, self._parts.pop, msn, None)
        response = made.get(index)
        if response is None:
            response = made[index] = media(s.parts[index].data)
        return response

    def media_playlist(self, variant: str, query: bytes) -> bytes:
        """The media playlist of a variant, its URIs ending in `query`; needs a complete segment."""
        seg = self.seg
        rendered = self._playlists.get(variant)
        if rendered is None or rendered[0] != seg.version:
            rendered = self._playlists[variant] = (seg.version, media_pieces(seg, variant))
        return query.join(rendered[1])

    def master_playlist(self, query: bytes) -> bytes:
        """The LL-HLS master playlist, its URI ending in `query`; needs a segment."""
        seg = self.seg
        rendered = self._playlists.get("master")
        if rendered is None or rendered[0] != seg.version:
            rendered = self._playlists["master"] = (seg.version, master_pieces(seg, self.rendition()))
        return query.join(rendered[1])

    def rendition(self) -> RenditionShape | None:
        """What the stream's H.264 rendition is, when the stream is H.265 and has one: known
        from the source's size and config, so listing it starts no transcode."""
        stream = self.seg.stream
        video = self.seg.segments[-1].params.video
        if stream.rendition is None or video is None or not video.hevc:
            return None
        conf = stream.conf
        return RenditionShape.of(video.width, video.height, conf.rendition_height, conf.rendition_kbps)

    def sent(self, response: LeanResponse) -> LeanResponse:
        """`response`, counted as sent."""
        self.bytes_out += len(response.body)
        return response

    # -- StreamOutput --------------------------------------------------------------

    def close(self) -> None:
        """The stream is going away (its segmenter answers the waiting requests)."""
        self._parts.clear()
        self._playlists.clear()

    def describe(self) -> dict[str, Any]:
        return {}  # GetSrc shows the segmenter's nHlsSegments

    def counts(self) -> OutputCounts:
        return OutputCounts(bytes_out=self.bytes_out, requests=self.requests, held=self.held)
