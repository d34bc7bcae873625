"""Stock h5s player code against a stream that is already live (PROTOCOLS.md §2, rule 5).

The page (fixtures/stock_mse_player.html) does only what the stock MSE player does: it
never writes currentTime, and it reconnects when its buffer runs 5 s ahead of playback.
A viewer whose media does not start at decode time 0 never plays, and reconnects forever.
"""

from __future__ import annotations

import time
from pathlib import Path

PAGE = (Path(__file__).parent / "fixtures" / "stock_mse_player.html").read_text()
LIVE_BEFORE = 30  # seconds the stream runs before the first viewer
WATCH = 60  # seconds the first viewer watches
SECOND_AFTER = 20  # the second viewer joins this much later


def stock_page(browser, gw, session: str):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{gw.url}/login.html")  # the gateway's origin, as a page that embeds the player has
    page.set_content(PAGE)
    page.evaluate("url => window.start(url)", f"{gw.ws_url}/api/v1/h5swsapi?token=cam&hevc=false&session={session}")
    return context, page


def stock_state(page) -> dict:
    return page.evaluate("() => window.stock")


def first_played(state: dict) -> dict:
    """The first sample with a decoded frame."""
    return next(s for s in state["samples"] if s["frames"] > 0)


def test_no_seek_players_of_a_live_stream_start_at_0_and_play_through_a_camera_restart(
    make_gateway, camera_factory, browser
):
    camera = camera_factory(profile="high", audio="pcma")  # G.711 like a Hikvision: audio is transcoded to AAC
    gw = make_gateway()
    session = gw.login()
    status, answer = gw.api(
        "AddSrcRTSP", session=session, name="Cam", token="cam", url=camera.url, connecttype="H5_ALWAYS"
    )
    assert status == 200, answer
    time.sleep(LIVE_BEFORE)
    first, first_page = stock_page(browser, gw, session)
    began = time.monotonic()
    try:
        time.sleep(SECOND_AFTER)
        second, second_page = stock_page(browser, gw, session)
        try:
            time.sleep(10)
            camera.stop()  # the camera restarts under both viewers
            time.sleep(3)
            camera.start()
            time.sleep(began + WATCH - time.monotonic())
            one, two = stock_state(first_page), stock_state(second_page)
        finally:
            second.close()
    finally:
        first.close()

    for state in (one, two):
        assert state["errors"] == []
        assert state["reconnects"] == 0 and state["opened"] == 1, state["samples"][-5:]
        start = first_played(state)
        assert start["start"] is not None and start["start"] < 0.2, start  # the buffer starts at 0 ...
        assert start["time"] < 2, start  # ... where playback is
        times = [s["time"] for s in state["samples"]]
        assert times == sorted(times)
        assert max(s["end"] - s["time"] for s in state["samples"] if s["end"] is not None) < 5
    # The first watched 60 s, 3 s of them without a camera; the second 40 s.
    assert one["samples"][-1]["time"] > WATCH - 3 - 6, one["samples"][-1]
    assert two["samples"][-1]["time"] > WATCH - SECOND_AFTER - 3 - 6, two["samples"][-1]
    assert two["samples"][-1]["time"] < one["samples"][-1]["time"] - SECOND_AFTER + 5
