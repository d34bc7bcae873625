"""RTCP sender reports (RFC 3550 §6.4.1): what lets a reader line up video and audio.

Each report maps a wall-clock time (NTP format) to the track's RTP clock at that moment,
and says how many packets and payload bytes the reader was sent on the track.
"""

from __future__ import annotations

import struct
import time

SENDER_REPORT = struct.Struct(">BBHIIIIII")
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 to 1970
INTERVAL = 5.0  # seconds between a reader's reports


def ntp_time(now: float) -> tuple[int, int]:
    seconds = now + NTP_EPOCH_OFFSET
    return int(seconds) & 0xFFFFFFFF, int((seconds % 1) * (1 << 32)) & 0xFFFFFFFF


def sender_report(ssrc: int, now: float, rtp_time: int, packets: int, octets: int) -> bytes:
    """One SR with no report blocks (RC 0; length 6 words after the first)."""
    high, low = ntp_time(now)
    return SENDER_REPORT.pack(
        0x80, 200, 6, ssrc, high, low, rtp_time & 0xFFFFFFFF, packets & 0xFFFFFFFF, octets & 0xFFFFFFFF
    )


def wall_clock() -> float:
    return time.time()
