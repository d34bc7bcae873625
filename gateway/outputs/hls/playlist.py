"""HLS playlists (RFC 8216 and the LL-HLS additions of its second edition) from a segmenter.

Child URIs are relative and end with the request's own credential (`?session=…` or
`?hlstoken=…`). A playlist is rendered as bytes cut where the credential goes (its
pieces), so whoever keeps the pieces (the HTTP side, once per segmenter change, whatever
the number of clients polling) makes a request's playlist with one join.

Variants: "v1" MPEG-TS segments (version 3, as h5stream's sample), "v2" fMP4 segments
(version 7), "ll" fMP4 segments plus parts, preload hint and blocking reload (version 9).
A player without LL support reads the "ll" playlist as a regular fMP4 one.

The LL-HLS master of an H.265 stream with an H.264 rendition lists both, by CODECS, so
hls.js and Safari pick the one they can play; the rendition's playlist (`h264/stream.m3u8`)
comes from the rendition stream's own segmenter, and is only made when a player asks.
"""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.formats.video_transcode import RenditionShape
from gateway.outputs.hls.segmenter import HlsSegmenter, Segment

QUERY = "\x00"  # marks where a request's credential goes while rendering
VERSIONS = {"v1": 3, "v2": 7, "ll": 9}
PARTS_WINDOW = 3  # target durations from the live edge whose segments keep EXT-X-PART lines
HOLD_BACK_PARTS = 3  # PART-HOLD-BACK in part targets (the spec asks for at least 2, advises 3)
RENDITION_DIR = "h264"  # the H.264 rendition's files: /{token}/h264/stream.m3u8, ...


def media_playlist(seg: HlsSegmenter, variant: str, query: bytes) -> bytes:
    """The media playlist of a variant, its URIs ending in `query`."""
    return query.join(media_pieces(seg, variant))


def media_pieces(seg: HlsSegmenter, variant: str) -> list[bytes]:
    """The media playlist of a variant cut where the credential goes; needs at least one
    complete segment."""
    return _pieces(_render_media(seg, variant))


def master_pieces(seg: HlsSegmenter, rendition: RenditionShape | None = None) -> list[bytes]:
    """The LL-HLS entry point (the stream, and an H.265 stream's H.264 `rendition` when it
    has one, each with the CODECS a browser needs to decide), cut where the credential goes."""
    return _pieces(_render_master(seg, rendition))


def _pieces(text: str) -> list[bytes]:
    return text.encode().split(QUERY.encode())


def _date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _render_media(seg: HlsSegmenter, variant: str) -> str:
    ll = variant == "ll"
    shown: list[Segment] = seg.complete_segments[-seg.segment_count :]
    if ll and seg.open_segment is not None:
        shown.append(seg.open_segment)
    first = shown[0]
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VERSIONS[variant]}", f"#EXT-X-TARGETDURATION:{int(seg.max_duration)}"]
    if ll:
        lines.append(
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={HOLD_BACK_PARTS * seg.part_target:.3f}"
        )
        lines.append(f"#EXT-X-PART-INF:PART-TARGET={seg.part_target:.3f}")
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first.msn}")
    removed = seg.dropped_discontinuities + sum(s.discontinuity for s in seg.segments if s.msn < first.msn)
    if removed:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{removed}")
    lines.append("#EXT-X-INDEPENDENT-SEGMENTS")

    # Parts are listed for the segments that end within PARTS_WINDOW targets of the edge.
    with_parts, span = set(), 0.0
    for s in reversed(shown):
        if span >= PARTS_WINDOW * seg.target:
            break
        with_parts.add(s.msn)
        span += s.duration or sum(p.duration for p in s.parts)

    ext = "ts" if variant == "v1" else "m4s"
    init_id = None
    for s in shown:
        if s.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if variant != "v1" and s.init_id != init_id:
            init_id = s.init_id
            lines.append(f'#EXT-X-MAP:URI="init{init_id}.mp4{QUERY}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_date(s.start)}")
        if ll and s.msn in with_parts:
            for p in s.parts:
                independent = ",INDEPENDENT=YES" if p.independent else ""
                lines.append(
                    f'#EXT-X-PART:DURATION={p.duration:.3f},URI="part{s.msn}.{p.index}.m4s{QUERY}"{independent}'
                )
        if s.complete:
            lines += [f"#EXTINF:{s.duration:.3f},", f"seg{s.msn}.{ext}{QUERY}"]
    if ll:
        open_seg = seg.open_segment
        msn, index = (open_seg.msn, len(open_seg.parts)) if open_seg else (seg.next_msn, 0)
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part{msn}.{index}.m4s{QUERY}"')
    return "\n".join(lines) + "\n"


def _render_master(seg: HlsSegmenter, rendition: RenditionShape | None) -> str:
    newest = seg.segments[-1]
    params = newest.params
    audio = [params.audio.codec_string] if params.audio is not None else []
    codecs = ",".join([params.video.codec_string, *audio] if params.video is not None else audio)
    peak = max((len(s.data or b"") * 8 / s.duration for s in seg.complete_segments if s.duration), default=0)
    info = f'BANDWIDTH={max(int(peak), 1)},CODECS="{codecs}"'
    if params.video is not None:
        info += f",RESOLUTION={params.video.width}x{params.video.height}"
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VERSIONS['ll']}",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f"#EXT-X-STREAM-INF:{info}",
        f"stream.m3u8{QUERY}",
    ]
    if rendition is not None:
        codecs = ",".join([rendition.codec_string, *audio])
        bandwidth = rendition.kbps * 1100  # its encoder's maxrate, and a tenth for audio and the container
        info = f'BANDWIDTH={bandwidth},CODECS="{codecs}",RESOLUTION={rendition.width}x{rendition.height}'
        lines += [f"#EXT-X-STREAM-INF:{info}", f"{RENDITION_DIR}/stream.m3u8{QUERY}"]
    return "\n".join(lines) + "\n"
