"""Machine numbers for GetRunInfo, read from /proc (Linux) without extra dependencies.

CPU and network are rates, so a sampler task reads the counters every few seconds and
the API answers the latest rates at once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 2.0


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _net_bytes() -> tuple[int, int]:
    """(received, sent) bytes on all interfaces but loopback."""
    rx = tx = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, data = line.split(":", 1)
        if name.strip() == "lo":
            continue
        values = data.split()
        rx += int(values[0])
        tx += int(values[8])
    return rx, tx


def memory() -> tuple[int, int]:
    """(total, available) bytes."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, value = line.split(":", 1)
        info[key] = int(value.split()[0]) * 1024
    return info["MemTotal"], info.get("MemAvailable", info["MemFree"])


@dataclass
class Rates:
    cpu_percent: int = 0
    net_in_kbps: int = 0
    net_out_kbps: int = 0


class RunInfo:
    def __init__(self, disk_path: Path):
        self.disk_path = disk_path
        self.started = time.time()
        self.rates = Rates()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _sample(self) -> None:
        cpu, net, when = _cpu_times(), _net_bytes(), time.monotonic()
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            cpu2, net2, when2 = _cpu_times(), _net_bytes(), time.monotonic()
            total = cpu2[1] - cpu[1]
            seconds = max(when2 - when, 1e-3)
            self.rates = Rates(
                cpu_percent=round(100 * (cpu2[0] - cpu[0]) / total) if total else 0,
                net_in_kbps=round((net2[0] - net[0]) * 8 / 1000 / seconds),
                net_out_kbps=round((net2[1] - net[1]) * 8 / 1000 / seconds),
            )
            cpu, net, when = cpu2, net2, when2

    def snapshot(self) -> dict:
        total_mem, available = memory()
        path = self.disk_path if self.disk_path.exists() else Path(os.sep)
        disk = shutil.disk_usage(path)
        uptime = int(time.time() - self.started)
        return {
            "strRunTime": f"{uptime // 86400}d {uptime % 86400 // 3600:02d}:{uptime % 3600 // 60:02d}"
            f":{uptime % 60:02d}",
            "nCPUUsage": self.rates.cpu_percent,
            "nMemoryUsage": round(100 * (total_mem - available) / total_mem),
            "nTotalMemoryByte": total_mem,
            "nNetworkInK": self.rates.net_in_kbps,
            "nNetworkOutK": self.rates.net_out_kbps,
            "nTotalSpaceByte": disk.total,
            "nFreeSpaceByte": disk.free,
            "nRecordTotalSpaceByte": disk.total,
            "nRecordFreeSpaceByte": disk.free,
        }
