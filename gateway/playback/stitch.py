"""One MP4 from the recordings of a time range: remuxed (never decoded) across segments.

The output starts at the keyframe at or before the range's start (a player cannot begin
elsewhere without decoding) and ends with the last packet before the range's end. Each
file is placed by its index start time, so a gap between recordings stays a gap.
It is fragmented MP4 (an empty moov first, then a fragment per keyframe), written in
order to any writable object: a download streams it to the client as it is made, with
no temp file (ffprobe, VLC and browsers read it, duration included).
Blocking (PyAV): run it in a thread.
"""

from __future__ import annotations

import logging
from typing import Protocol

import av

from gateway.playback.pacer import Segment, first_frame, seek_file

log = logging.getLogger(__name__)


FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


class Sink(Protocol):
    """Where the MP4 goes: written in order, never sought (PyAV sees no seek())."""

    def write(self, data: bytes) -> int: ...


def stitch(segments: list[Segment], length: float, sink: Sink) -> float:
    """Write `segments` (offsets in seconds from the range's start) up to `length` seconds
    into `sink` (fragmented MP4, written in order, never sought); returns the seconds of
    media written. An exception from `sink.write` ends it."""
    with av.open(sink, "w", format="mp4", options={"movflags": FRAGMENTED}) as out:
        outputs: dict[str, av.stream.Stream] = {}
        extradata: dict[str, bytes] = {}
        origin: float | None = None  # range seconds of the first keyframe written: output's 0
        last_dts: dict[str, int] = {}
        written = 0.0
        for segment in segments:
            if segment.end <= 0 or segment.offset >= length:
                continue
            with av.open(str(segment.path)) as container:
                if not container.streams.video:
                    continue
                video = container.streams.video[0]
                inputs: dict[str, av.stream.Stream | None] = {
                    "video": video,
                    "audio": container.streams.audio[0] if container.streams.audio else None,
                }
                if not outputs:
                    for kind, stream in inputs.items():
                        if stream is not None:
                            outputs[kind] = out.add_stream_from_template(stream)
                            # The template leaves the tag out, and FFmpeg's mp4 default for
                            # HEVC is hev1; the recordings are hvc1 (sets in hvcC only).
                            outputs[kind].codec_tag = stream.codec_tag
                            extradata[kind] = bytes(stream.codec_context.extradata or b"")
                if bytes(video.codec_context.extradata or b"") != extradata["video"]:
                    log.warning("download: %s has other video parameters; left out", segment.path.name)
                    continue
                start = first_frame(video)
                if segment.offset < 0:
                    seek_file(container, video, start - segment.offset)
                started = False
                for packet in container.demux([s for s in inputs.values() if s is not None]):
                    kind = "video" if packet.stream is video else "audio"
                    if packet.dts is None or kind not in outputs:
                        continue
                    at = segment.offset + float(packet.dts * packet.time_base) - start
                    if kind == "video" and not started:
                        if not packet.is_keyframe:
                            continue
                        started = True
                        if origin is None:
                            origin = at
                    if not started or origin is None:
                        continue
                    if at >= length:
                        if kind == "video":
                            break
                        continue
                    shift = round((segment.offset - start - origin) / packet.time_base)
                    dts, pts = packet.dts + shift, (packet.pts if packet.pts is not None else packet.dts) + shift
                    if dts < 0 or dts <= last_dts.get(kind, -1):
                        continue  # before the output's start, or overlapping the previous file
                    packet.dts, packet.pts = dts, pts
                    last_dts[kind] = dts
                    packet.stream = outputs[kind]
                    out.mux(packet)
                    written = max(written, at - origin)
        if not outputs:
            raise ValueError("no video in the recordings")
    return written
