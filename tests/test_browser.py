"""What a person sees: Chromium logs in, opens a source and the video really plays."""

from __future__ import annotations

import time

SMPTE_BARS = [(255, 255, 255), (255, 255, 0), (0, 255, 255), (0, 255, 0), (255, 0, 255), (255, 0, 0), (0, 0, 255)]


def wait_playing(page, seconds: float = 2.0) -> dict:
    """Wait for decoded video, then check that playback time advances."""
    page.wait_for_function("() => { const v = document.querySelector('video'); return v && v.videoWidth > 0 }")
    before = page.evaluate("() => document.querySelector('video').currentTime")
    time.sleep(seconds)
    state = page.evaluate(
        """() => { const v = document.querySelector('video');
                   const q = v.getVideoPlaybackQuality();
                   return {width: v.videoWidth, height: v.videoHeight, time: v.currentTime,
                           frames: q.totalVideoFrames, latency: v.buffered.length ?
                           v.buffered.end(v.buffered.length - 1) - v.currentTime : null} }"""
    )
    assert state["time"] - before > seconds * 0.6, (before, state)
    return state


def test_login_index_and_sample_clip_plays(gateway, page):
    page.goto(f"{gateway.url}/")
    page.wait_for_url("**/login.html**")
    page.fill("#user", "admin")
    page.fill("#password", "12345")
    page.click("#login-btn")
    tile = page.locator("a[href='player.html?token=token1']").first
    tile.wait_for()
    tile.click()
    page.wait_for_url("**/player.html?token=token1")
    state = wait_playing(page)
    assert (state["width"], state["height"]) == (640, 360)
    assert state["frames"] > 25


def test_wrong_password_is_shown(gateway, page):
    page.goto(f"{gateway.url}/login.html")
    page.fill("#user", "admin")
    page.fill("#password", "nope")
    page.click("#login-btn")
    error = page.locator("#login-error")
    error.wait_for(state="visible")
    assert "wrong user or password" in error.inner_text()


def open_player(gateway, page, token: str) -> None:
    session = gateway.login()
    page.goto(f"{gateway.url}/login.html")
    page.evaluate("s => localStorage.setItem('h5ss.session', s)", session)
    page.goto(f"{gateway.url}/player.html?token={token}")


def bar_colours(page) -> list[list[int]]:
    """RGB at the middle of each of the 7 SMPTE bars of the current video frame."""
    return page.evaluate(
        """() => { const v = document.querySelector('video');
                   const c = document.createElement('canvas');
                   c.width = v.videoWidth; c.height = v.videoHeight;
                   const g = c.getContext('2d'); g.drawImage(v, 0, 0);
                   const out = [];
                   for (let i = 0; i < 7; i++) {
                     const d = g.getImageData(Math.floor((i + 0.5) * c.width / 7), Math.floor(c.height / 2), 1, 1).data;
                     out.push([d[0], d[1], d[2]]);
                   }
                   return out; }"""
    )


def assert_smpte(colours: list[list[int]], tolerance: int = 48) -> None:
    for got, want in zip(colours, SMPTE_BARS):
        assert all(abs(g - w) <= tolerance for g, w in zip(got, want)), (colours, SMPTE_BARS)


def test_rtsp_camera_plays_in_chromium_with_right_picture(camera_source, page):
    gw, _, _ = camera_source(profile="high", audio="pcma")
    open_player(gw, page, "cam")
    state = wait_playing(page)
    assert (state["width"], state["height"]) == (640, 360)
    assert_smpte(bar_colours(page))
    # The player keeps close to the live edge.
    assert state["latency"] is not None and state["latency"] < 1.5, state


def test_multi_slice_camera_picture_is_intact(camera_source, page):
    gw, _, _ = camera_source(slices=2, audio="none")
    open_player(gw, page, "cam")
    wait_playing(page, 1)
    for _ in range(3):
        assert_smpte(bar_colours(page))
        time.sleep(0.5)


def test_browser_viewer_survives_camera_restart_without_reconnecting(camera_source, page):
    gw, _, camera = camera_source(audio="pcma")
    open_player(gw, page, "cam")
    wait_playing(page, 1)
    camera.stop()
    time.sleep(3)
    stalled_at = page.evaluate("() => document.querySelector('video').currentTime")
    camera.start()
    back = time.monotonic()
    page.wait_for_function(
        "t => document.querySelector('video').currentTime > t + 0.2", arg=stalled_at, timeout=10_000
    )
    assert time.monotonic() - back <= 2.5  # the 0.2 s of playback it waits for included
    assert page.evaluate("() => window.h5ssPlayer.stats().reconnects") == 0
    assert_smpte(bar_colours(page))


def test_muted_player_takes_video_only_and_unmute_brings_audio(camera_source, page):
    gw, _, _ = camera_source(audio="pcma")
    open_player(gw, page, "cam")
    wait_playing(page, 1)
    assert "mp4a" not in page.evaluate("() => window.h5ssPlayer.stats().mime")
    page.click("#mute")
    page.wait_for_function("() => (window.h5ssPlayer.stats().mime || '').includes('mp4a')")
    wait_playing(page, 1.5)
    assert page.evaluate("() => document.querySelector('video').muted") is False
