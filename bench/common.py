"""Shared bench helpers: a gateway process, clip making, process CPU and RSS from /proc."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.gateway import Gateway  # noqa: E402  (the same runner the tests use)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_percent(pid: int, seconds: float) -> float:
    """Average CPU of `pid` over `seconds`, in % of one core."""
    start, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - start) / (time.monotonic() - t0)


def make_clip(path: Path, width: int, height: int, fps: int, seconds: int, bitrate: int) -> Path:
    """An H.264 + AAC clip of the given size/bit rate, made once and reused."""
    if path.exists():
        return path
    from gateway.sample import make_sample

    make_sample(path, seconds=seconds, width=width, height=height, fps=fps, bitrate=bitrate)
    return path


__all__ = ["Gateway", "cpu_percent", "cpu_seconds", "make_clip", "rss_mb"]
