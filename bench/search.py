"""Search latency over 10,000 indexed recordings spread over four months.

Usage: python3 bench/search.py [--rows 10000] [--tokens 4] [--days 120] [--repeat 50]

The store is filled before the gateway starts: `rows` recording files (small placeholder
files in the real layout) of `tokens` cameras, evenly over `days` days, each with its
index row, so the gateway's start-up reconcile checks them all (its time is printed too).
Retention is off (nRecordInDay 0). Then `Search` is called over HTTP, one call after the
other, for three typical questions: one camera's day, one camera's month, and every
camera over the whole span (every row: a 1.7 MB answer, printed for scale). Target: p50
<= 100 ms for the camera-by-time questions a client asks (the first two).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import Gateway, machine_note, show

from gateway.store.index import MediaEntry, MediaIndex
from gateway.store.layout import Place
from gateway.store.timefmt import format_time

TARGET_MS = 100.0


def fill(store: Path, rows: int, tokens: int, days: int, end: float) -> None:
    span = days * 86400
    step = span / (rows / tokens)
    duration = min(600.0, step)
    entries = []
    for i in range(rows):
        token = f"cam{i % tokens}"
        start = end - span + (i // tokens) * step
        when = datetime.fromtimestamp(start, timezone.utc)
        path = Place.at("record", token, when).path(token)
        (store / path).parent.mkdir(parents=True, exist_ok=True)
        (store / path).write_bytes(b"\0" * 64)
        entries.append(MediaEntry("record", token, path, start, duration, 64, "+0000"))
    index = MediaIndex(store / "index.sqlite3")
    index.put_many(entries)
    index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--tokens", type=int, default=4)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    print(machine_note())
    end = time.time()

    def iso(t: float) -> str:
        return format_time(datetime.fromtimestamp(t, timezone.utc))

    queries = {
        "one camera, one day": {"token": "cam1", "start": iso(end - 30 * 86400), "end": iso(end - 29 * 86400)},
        "one camera, 30 days": {"token": "cam1", "start": iso(end - 60 * 86400), "end": iso(end - 30 * 86400)},
        f"all cameras, {args.days} days": {"start": iso(end - args.days * 86400 - 1), "end": iso(end + 1)},
    }
    targeted = list(queries)[:2]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp) / "gw", system__strLogLevel="warning", system__nRecordInDay=0,
                     system__nDiskFullPercent=100)
        t0 = time.monotonic()
        fill(gw.root / "mediastore", args.rows, args.tokens, args.days, end)
        print(f"store: {args.rows} recordings of {args.tokens} cameras over {args.days} days "
              f"(made in {time.monotonic() - t0:.1f} s)")
        t0 = time.monotonic()
        gw.start()
        print(f"gateway up (start-up reconcile of {args.rows} files included) in {time.monotonic() - t0:.2f} s")
        try:
            session = gw.login()
            for label, query in queries.items():
                times, found = [], 0
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    status, answer = gw.api("Search", session=session, type="record", **query)
                    times.append((time.perf_counter() - t) * 1000)
                    assert status == 200 and answer["bStatus"], answer
                    found = len(answer["record"])
                show(f"{label} ({found} found)", times)
                results[label] = sorted(times)[len(times) // 2]
        finally:
            gw.stop()
    worst = max(results[label] for label in targeted)
    verdict = "PASS" if worst <= TARGET_MS else "MISS"
    print(f"Search of one camera's day or month among {args.rows} indexed recordings: worst p50 {worst:.1f} ms "
          f"(target <= {TARGET_MS:.0f} ms): "
          f"{verdict}")


if __name__ == "__main__":
    main()
