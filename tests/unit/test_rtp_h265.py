"""formats/rtp_h265.py: RFC 7798 payloads, their header bits read back, and the access
units they carry reassembled and decoded by FFmpeg's HEVC decoder."""

from __future__ import annotations

import random
from fractions import Fraction
from functools import cache

import av
import pytest

from gateway.formats import h265, nal
from gateway.formats.rtp_h264 import MAX_PAYLOAD
from gateway.formats.rtp_h265 import NAL_AP, NAL_FU, ap, fu, packetize
from tests.fixtures.rtp_h265 import depacketize
from tests.fixtures.rtp_h265 import payload_header as header

pytestmark = pytest.mark.unit


@cache
def hevc_access_units(frames: int = 6, width: int = 320, height: int = 240) -> list[tuple[bool, list[bytes]]]:
    """libx265's access units as (IRAP, NAL units), parameter sets in their own first unit.
    Noise makes the keyframe's slice far larger than one packet."""
    ctx = av.CodecContext.create("libx265", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"preset": "ultrafast", "x265-params": "keyint=3:min-keyint=3:bframes=0:log-level=error"}
    ctx.open()
    noise = random.Random(7)
    units = []
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(noise.randrange(256) for _ in range(plane.buffer_size)))
        frame.pts = i
        units += [bytes(p) for p in ctx.encode(frame)]
    units += [bytes(p) for p in ctx.encode(None)]
    return [
        (any(h265.is_irap(h265.nal_type(n)) for n in nal.split_annexb(u)), nal.split_annexb(u)) for u in units
    ]


def test_parameter_sets_aggregate_and_slices_fragment_within_the_budget():
    units = hevc_access_units()
    parameter_sets = [n for n in units[0][1] if h265.nal_type(n) in (h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS)]
    assert [h265.nal_type(n) for n in parameter_sets] == [h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS]
    slices = [n for n in units[0][1] if h265.is_irap(h265.nal_type(n))]
    assert len(slices[0]) > 3 * MAX_PAYLOAD  # noise: the keyframe's slice needs fragments
    payloads = packetize(slices, parameter_sets)
    assert all(len(p) <= MAX_PAYLOAD for p in payloads)
    assert header(payloads[0]) == (0, NAL_AP, 0, 1)  # parameter sets' TID is 0 (+1)
    assert payloads[0][2:4] == len(parameter_sets[0]).to_bytes(2, "big")
    fragments = payloads[1:]
    assert {header(p) for p in fragments} == {(0, NAL_FU, 0, 1)}
    fu_headers = [p[2] for p in fragments]
    assert fu_headers[0] == 0x80 | h265.nal_type(slices[0])  # S set, the slice's own type
    assert fu_headers[-1] == 0x40 | h265.nal_type(slices[0])  # E set
    assert all(h == h265.nal_type(slices[0]) for h in fu_headers[1:-1])
    assert depacketize(payloads) == parameter_sets + slices


def test_small_units_go_alone_and_nothing_but_parameter_sets_is_aggregated():
    small = [bytes([h265.NAL_IRAP_FIRST + 3 << 1, 1]) + b"\x11" * 40, bytes([2, 1]) + b"\x22" * 30]
    assert packetize(small) == small
    vps, sps, pps = bytes([64, 1, 9]), bytes([66, 1, 8]), bytes([68, 1, 7])
    assert packetize(small, [vps, sps, pps]) == [ap([vps, sps, pps]), *small]
    assert ap([vps, sps, pps]) == bytes([NAL_AP << 1, 1, 0, 3, 64, 1, 9, 0, 3, 66, 1, 8, 0, 3, 68, 1, 7])


def test_fragments_carry_layer_and_tid_and_stay_even():
    unit = bytes([(1 << 1) | 0, (5 << 3) | 3]) + bytes(range(256)) * 10  # TRAIL_R, LayerId 5, TID 3 (+1)
    payloads = fu(unit, budget=1000)
    assert [len(p) for p in payloads] == [3 + 854, 3 + 854, 3 + 852]
    assert all(header(p) == (0, NAL_FU, 5, 3) for p in payloads)
    assert depacketize(payloads) == [unit]


def test_every_access_unit_decodes_after_the_round_trip():
    """Packetized with VPS+SPS+PPS before each IRAP, depacketized, decoded by FFmpeg: each
    frame comes out at the encoder's size."""
    units = hevc_access_units()
    parameter_sets = [n for n in units[0][1] if h265.nal_type(n) in (h265.NAL_VPS, h265.NAL_SPS, h265.NAL_PPS)]
    decoder = av.CodecContext.create("hevc", "r")
    frames = []
    irap_count = 0
    for irap, nals in units:
        slices = [n for n in nals if h265.nal_type(n) < h265.NAL_VPS]
        irap_count += irap
        payloads = packetize(slices, parameter_sets if irap else None)
        frames += decoder.decode(av.Packet(nal.to_annexb(depacketize(payloads))))
    frames += decoder.decode(None)
    assert irap_count == 2 and len(units) == 6
    assert [(f.width, f.height) for f in frames] == [(320, 240)] * 6
