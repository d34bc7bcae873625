"""HikCentral Connect URL renewal: the gap a WebSocket viewer sees when the expiring RTMP
URL is replaced (make-before-break), and the platform request rate.

Usage: python3 bench/hik_renewal.py [--renewals 5] [--validity 15] [--cameras 1]

The HikCentral Connect emulator (tests/fixtures/hikcentral.py) hands out signed RTMP URLs
valid `--validity` s; nginx-rtmp refuses and cuts them once expired. One ffmpeg publishes
a 640x360 25 fps H.264 + AAC feed. The gateway imports the cameras (AddDeviceHik) and one
WebSocket viewer per camera watches until every camera's URL was renewed `--renewals`
times. Printed: per renewal, the longest time between two video fragments at the viewer
in the 6 s after the new URL was handed out (the switch happens in there), beside the
same for the rest of the run (the feed's own jitter); reconnects; requests/s at the
platform (busiest 1 s window and mean). Target: every renewal gap <= 1 s, no reconnect.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import Gateway, machine_note, show, wait_until
from tests.fixtures.hikcentral import HikCentralEmulator
from tests.fixtures.rtmp_origin import RtmpOrigin
from tests.fixtures.ws_client import WsViewer

APP_KEY, SECRET_KEY = "bench-appkey", "bench-secretkey"
SWITCH_WINDOW = 6.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--renewals", type=int, default=5)
    parser.add_argument("--validity", type=int, default=15)
    parser.add_argument("--cameras", type=int, default=1)
    args = parser.parse_args()
    print(machine_note())
    with tempfile.TemporaryDirectory(prefix="h5ss-bench-") as tmp, \
            HikCentralEmulator(APP_KEY, SECRET_KEY) as platform:
        cameras = [(f"cam{i}", f"Camera {i}") for i in range(1, args.cameras + 1)]
        platform.add_device("D0001", "NVR", cameras)
        origin = RtmpOrigin(workdir=Path(tmp) / "rtmp", notify=platform.notify_url)
        gw = Gateway(Path(tmp) / "gw", hikvision__strHost=platform.url, hikvision__strAppKey=APP_KEY,
                     hikvision__strSecretKey=SECRET_KEY, hikvision__nUrlValiditySec=args.validity)
        viewers: list[WsViewer] = []
        try:
            platform.rtmp_port = origin.port
            origin.publish(platform.feed, play_url=platform.signed_url("cam1", 30))
            gw.start()
            session = gw.login()
            status, answer = gw.api("AddDeviceHik", session=session)
            assert status == 200 and answer["nAdded"] == args.cameras, answer
            clock = time.time() - time.monotonic()  # viewer times are monotonic
            for camera_id, _ in cameras:
                viewer = WsViewer(gw.ws_url, camera_id, session)
                viewer.start()
                viewers.append(viewer)
            started = time.monotonic()
            enough = lambda: all(len(platform.issued_for(c)) > args.renewals for c, _ in cameras)  # noqa: E731
            wait_until(enough, args.renewals * args.validity + 30, step=0.5)
            time.sleep(SWITCH_WINDOW)
            for viewer in viewers:
                viewer.stop()
            elapsed = time.monotonic() - started
        finally:
            gw.stop()
            origin.stop()
        worst_renewal = 0.0
        for (camera_id, _), viewer in zip(cameras, viewers):
            times = [t + clock for t, _ in viewer.video_fragments()]
            gaps = [(b, b - a) for a, b in zip(times, times[1:])]
            renewals = platform.issued_for(camera_id)[1:]
            print(f"{camera_id}: {len(renewals)} renewals, {len(times)} video fragments, "
                  f"WebSocket connections {viewer.connections}, closed {viewer.close_code}")
            in_window: set[int] = set()
            for n, issued in enumerate(renewals, 1):
                window = [i for i, (t, _) in enumerate(gaps) if issued.at <= t <= issued.at + SWITCH_WINDOW]
                in_window.update(window)
                worst = max((gaps[i][1] for i in window), default=0.0)
                worst_renewal = max(worst_renewal, worst)
                print(f"  renewal {n}: longest gap {worst * 1000:6.0f} ms")
            show("gaps around renewals", [g * 1000 for i, (_, g) in enumerate(gaps) if i in in_window])
            show("gaps elsewhere", [g * 1000 for i, (_, g) in enumerate(gaps) if i not in in_window])
        print(f"platform requests: {len(platform.calls)} in {elapsed:.0f} s "
              f"(mean {len(platform.calls) / elapsed:.2f}/s, busiest 1 s window {platform.max_rate()}), "
              f"plays cut at expiry by the origin: {platform.dropped_plays}")
        ok = worst_renewal <= 1.0 and all(v.connections == 1 and v.close_code is None for v in viewers)
        print(f"{'PASS' if ok else 'MISS'}: longest renewal gap {worst_renewal * 1000:.0f} ms (target <= 1000 ms, "
              "no reconnect)")


if __name__ == "__main__":
    main()
