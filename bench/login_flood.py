"""Does a flood of wrong passwords slow everyone's requests? (issue 17, finding 6)

Usage: python3 bench/login_flood.py [--rate 30] [--seconds 10]

A gateway with no sources; one client calls Keepalive (a cheap command) every 20 ms and
times it, first quietly, then while another sends --rate wrong logins a second for the
admin (the lockout raised out of reach, so that each costs one PBKDF2 check, as
h5stream's UpdateUser had no lockout).
Meanwhile a rightful admin logs in from another address (127.0.0.2) every half second.
Printed: Keepalive's latency in both phases, the rightful logins' times and answers, and
the wrong logins' answers by status.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from common import Gateway, machine_note, show

from tests.fixtures.gateway import md5


async def probe(url: str, session: str, seconds: float) -> list[float]:
    times = []
    async with aiohttp.ClientSession() as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            async with http.get(f"{url}/api/v1/Keepalive", params={"session": session}) as r:
                await r.read()
                assert r.status == 200
            times.append(1000 * (time.perf_counter() - started))
            await asyncio.sleep(0.02)
    return times


async def flood(url: str, rate: float, seconds: float) -> Counter[int]:
    statuses: Counter[int] = Counter()

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        async with http.get(f"{url}/api/v1/Login", params={"user": "admin", "password": md5(f"guess{i}")}) as r:
            await r.read()
            statuses[r.status] += 1

    async with aiohttp.ClientSession() as http:
        tasks, started = [], time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(http, i)))
        await asyncio.gather(*tasks)
    return statuses


async def rightful(url: str, seconds: float) -> tuple[list[float], Counter[int]]:
    times, statuses = [], Counter[int]()
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            async with http.get(f"{url}/api/v1/Login", params={"user": "admin", "password": md5("12345")}) as r:
                await r.read()
                statuses[r.status] += 1
            times.append(1000 * (time.perf_counter() - started))
            await asyncio.sleep(0.5)
    return times, statuses


async def main(gw: Gateway, rate: float, seconds: float) -> None:
    session = gw.login()
    show("Keepalive, quiet", await probe(gw.url, session, seconds))
    flooding = asyncio.create_task(flood(gw.url, rate, seconds))
    logins = asyncio.create_task(rightful(gw.url, seconds))
    show(f"Keepalive, {rate:g} wrong logins/s", await probe(gw.url, session, seconds))
    times, statuses = await logins
    show("rightful Login from another address", times)
    print(f"  rightful logins answered: {dict(statuses)}")
    print(f"  wrong logins answered: {dict(await flooding)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    print(machine_note())
    with tempfile.TemporaryDirectory() as tmp:
        gw = Gateway(Path(tmp), [], system__nLoginFailLimit=10**9).start()
        try:
            asyncio.run(main(gw, args.rate, args.seconds))
        finally:
            gw.stop()
