"""What the cloud hop adds (cloud push mode): latency over WS, and CPU on each side.

Usage: python3 bench/cloud_hop.py [--seconds 10] [--bitrate 4000] [--no-browser]

A real RTSP camera (GStreamer, x264 zerolatency, 1280x720 25 fps, --bitrate kbit/s) draws
the wall-clock milliseconds into every frame. An edge gateway pulls it (H5_ALWAYS) and is
linked to a cloud gateway on loopback (cloud.bEnable, the challenge-response link). Two
plain aiohttp WebSocket viewers watch at once: one on the edge (`lat`), one on the cloud
(`edge1_lat`). Each records the arrival time of every fragment; after the run the
fragments are decoded with PyAV and their stamps read, so each frame's arrival on the
cloud is paired with the same frame's arrival on the edge:

  hop      cloud arrival - edge arrival, per frame: what the link and the cloud's hub and
           fMP4 output add. A browser adds the same after either, so this is the
           glass-to-glass added by the hop. Target: p50 <= 30 ms.
  age      arrival - stamp on each side (camera encode + RTSP + gateway [+ hop]).
  browser  ws_latency.py's Chromium page (the real H5sPlayerWS, rVFC, stamp) on the edge's
           `lat`, then on the cloud's `edge1_lat`: glass-to-glass p50 of each (one after
           the other, so noisier than the paired hop).

CPU (% of one core, from /proc) in three phases of --seconds each: idle (no viewer), direct
(the edge viewer only), relayed (both viewers): the edge's cost of sending one stream over
the link is relayed - direct on the edge; the cloud's cost of one relayed stream with one
viewer is relayed - idle on the cloud.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from pathlib import Path

from common import Gateway, RtspCamera, add_rtsp, cpu_seconds, machine_note, source_state, summary, wait_until
import ws_latency
from ws_latency import avcc_of, browser_run, fragment_parts, luma_stamp

TOKEN, EDGE = "lat", "edge1"
TARGET_HOP_P50_MS = 30


async def capture(urls: list[str], seconds: float) -> list[list[tuple[float, bytes]]]:
    """Every binary message (arrival wall time, data) of each socket, for `seconds` after all have media."""
    import aiohttp

    out: list[list[tuple[float, bytes]]] = [[] for _ in urls]
    started = asyncio.Event()
    ready = [False] * len(urls)

    async def read(i: int, http: aiohttp.ClientSession) -> None:
        async with http.ws_connect(urls[i], max_msg_size=0) as ws:
            await ws.receive(timeout=30)  # the MIME type
            while True:
                message = await ws.receive(timeout=30)
                arrived = time.time()
                if message.type != aiohttp.WSMsgType.BINARY:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        continue
                    raise RuntimeError(f"socket {urls[i]} ended: {message.type} {message.extra}")
                if not ready[i]:
                    ready[i] = True
                    if all(ready):
                        started.set()
                out[i].append((arrived, message.data))

    async with aiohttp.ClientSession() as http:
        readers = [asyncio.create_task(read(i, http)) for i in range(len(urls))]
        await asyncio.wait_for(started.wait(), 30)
        await asyncio.sleep(seconds)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return out


def stamped_arrivals(messages: list[tuple[float, bytes]]) -> dict[int, float]:
    """stamp (ms) -> arrival wall time (ms) of each video frame, decoded after the run."""
    import av

    codec, out = None, {}
    for arrived, data in messages:
        if data[4:8] == b"ftyp":
            codec = av.CodecContext.create("h264", "r")
            codec.extradata = avcc_of(data)
            codec.thread_type = "NONE"
            continue
        parts = fragment_parts(data) if codec is not None else None
        if parts is None or parts[0] != 1:
            continue
        for frame in codec.decode(av.Packet(parts[3])):
            stamp = luma_stamp(frame)
            if stamp is not None:
                out.setdefault(stamp, arrived * 1000)
    return out


def cpu_over(pids: list[int], seconds: float, during=None) -> list[float]:
    """% of one core of each pid over `seconds` (while `during()` runs, if given)."""
    start, t0 = [cpu_seconds(p) for p in pids], time.monotonic()
    result = during() if during else time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return [100 * (cpu_seconds(p) - s) / elapsed for p, s in zip(pids, start)], result


def line(label: str, values: list[float]) -> None:
    s = summary(values)
    print(f"  {label:<34} p50 {s['p50']:7.1f}  p90 {s['p90']:7.1f}  p99 {s['p99']:7.1f}  "
          f"min {s['min']:7.1f}  max {s['max']:7.1f} ms  (n={s['n']})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--bitrate", type=int, default=4000, help="camera kbit/s")
    parser.add_argument("--no-browser", action="store_true", help="skip the Chromium glass-to-glass runs")
    args = parser.parse_args()
    print(machine_note(), flush=True)
    camera = RtspCamera(stamp=True, width=1280, height=720, fps=25, audio="none", bitrate=args.bitrate)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cloud = Gateway(Path(tmp) / "cloud", system__strLogLevel="warning", source__nOnDemandLingerSec=2)
            cloud.start()
            edge = Gateway(Path(tmp) / "edge", system__strLogLevel="warning", cloud__bEnable=True,
                           cloud__strServerToken=EDGE, cloud__strCloudIp="127.0.0.1",
                           cloud__strCloudPort=str(cloud.port), cloud__strUser="admin",
                           cloud__strPasswd=hashlib.md5(b"12345").hexdigest())
            edge.start()
            try:
                es, cs = edge.login(), cloud.login()
                add_rtsp(edge, es, TOKEN, camera.url, "H5_ALWAYS")
                if not wait_until(lambda: source_state(edge, es, TOKEN)["bOnline"], 20):
                    raise SystemExit(f"source did not come online:\n{edge.log()}")
                if not wait_until(lambda: any(s["bOnline"] and s["nSourceCount"] for s in
                                              cloud.api("GetServerList", session=cs)[1]["server"]), 20):
                    raise SystemExit(f"the edge did not link:\n{edge.log()}\n{cloud.log()}")
                time.sleep(1)
                pids = [edge.proc.pid, cloud.proc.pid]
                direct = f"{edge.ws_url}/api/v1/h5swsapi?token={TOKEN}&session={es}"
                relayed = f"{cloud.ws_url}/api/v1/h5swsapi?token={EDGE}_{TOKEN}&session={cs}"
                print(f"camera: 1280x720 25 fps x264 zerolatency, GOP 25, {args.bitrate} kbit/s; the edge pulls it "
                      "over RTSP/TCP (H5_ALWAYS) and links to the cloud over ws:// on loopback")

                idle, _ = cpu_over(pids, args.seconds)
                only_edge, _ = cpu_over(pids, args.seconds, lambda: asyncio.run(capture([direct], args.seconds)))
                before = edge.api("GetCloudClientInfo", session=es)[1]["nSentBytes"]
                t0 = time.monotonic()
                both, (edge_msgs, cloud_msgs) = cpu_over(
                    pids, args.seconds, lambda: asyncio.run(capture([direct, relayed], args.seconds)))
                link_mbps = 8 * (edge.api("GetCloudClientInfo", session=es)[1]["nSentBytes"] - before) \
                    / (time.monotonic() - t0) / 1e6

                at_edge, at_cloud = stamped_arrivals(edge_msgs), stamped_arrivals(cloud_msgs)
                common_stamps = sorted(set(at_edge) & set(at_cloud))
                hop = [at_cloud[s] - at_edge[s] for s in common_stamps]
                print(f"\nframes paired by stamp: {len(common_stamps)} (edge {len(at_edge)}, cloud {len(at_cloud)}); "
                      f"the link carried {link_mbps:.2f} Mbit/s")
                line("hop: cloud - edge arrival", hop)
                line("age at the edge viewer", [(at_edge[s] - s) % 2**32 for s in common_stamps])
                line("age at the cloud viewer", [(at_cloud[s] - s) % 2**32 for s in common_stamps])
                print("\nCPU, % of one core          edge    cloud")
                for label, row in (("idle (no viewer)", idle), ("direct (edge viewer)", only_edge),
                                   ("relayed (+ cloud viewer)", both)):
                    print(f"  {label:<26} {row[0]:6.1f}  {row[1]:6.1f}")
                print(f"  edge: sending one stream over the link  {both[0] - only_edge[0]:+.1f} %")
                print(f"  cloud: one relayed stream, one viewer   {both[1] - idle[1]:+.1f} %")
                if not args.no_browser:
                    print("\nChromium glass-to-glass (H5sPlayerWS), one after the other:")
                    g2g = {}
                    for label, gw, session, token in (("edge", edge, es, TOKEN), ("cloud", cloud, cs, f"{EDGE}_{TOKEN}")):
                        ws_latency.TOKEN = token  # the page plays this token
                        rows = browser_run(gw, session, 3, args.seconds, 200, None)["rows"]
                        g2g[label] = summary([row[0] for row in rows])
                        line(f"g2g on the {label} ({token})", [row[0] for row in rows])
                        line("  of which the player's buffer", [1000 * row[2] for row in rows if row[2] is not None])
                    print(f"  the cloud's p50 - the edge's: {g2g['cloud']['p50'] - g2g['edge']['p50']:+.1f} ms")
                p50 = summary(hop).get("p50", float("inf"))
                verdict = "PASS" if p50 <= TARGET_HOP_P50_MS else "MISS"
                print(f"\n{verdict}: the cloud hop adds {p50:.1f} ms p50 over WS (target <= {TARGET_HOP_P50_MS} ms)")
            finally:
                edge.stop()
                cloud.stop()
    finally:
        camera.stop()


if __name__ == "__main__":
    main()
