"""Shared fixtures: the real gateway process, real cameras, an RTMP origin and Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fixtures.browser import launch_chromium
from tests.fixtures.camera import RtspCamera
from tests.fixtures.gateway import Gateway, copy_sample
from tests.fixtures.rtmp_origin import RtmpOrigin

FILE_SOURCE = {"strName": "Sample", "strToken": "token1", "nType": "H5_FILE", "strUrl": "h5ss-sample.mp4"}
UNIT_DIR = Path(__file__).parent / "unit"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/unit is a unit test (`-m unit`); tests elsewhere say so themselves."""
    for item in items:
        if UNIT_DIR in item.path.parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def unit_tests_start_no_process(request: pytest.FixtureRequest) -> None:
    """A unit test that starts a process (ffmpeg, the gateway) fails, so `-m unit` stays fast.
    ctypes' find_library may run ldconfig while a library is first imported: that one goes."""
    if request.node.get_closest_marker("unit") is None:
        return
    start = subprocess.Popen.__init__

    def refuse(self: subprocess.Popen, args: Any, *rest: Any, **options: Any) -> None:
        if sys._getframe(1).f_globals.get("__name__") == "ctypes.util":
            return start(self, args, *rest, **options)
        raise AssertionError(f"a unit test started a process: {args!r}")

    request.getfixturevalue("monkeypatch").setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(scope="session")
def sample_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sample")


@pytest.fixture
def make_gateway(tmp_path: Path, sample_cache: Path) -> Iterator[Callable[..., Gateway]]:
    """Factory: make_gateway(sources=[...], section__key=value, start=True)."""
    made: list[Gateway] = []

    def make(sources: list[dict[str, Any]] | None = None, start: bool = True, **settings: Any) -> Gateway:
        gw = Gateway(tmp_path / f"gw{len(made)}", sources, **settings)
        copy_sample(gw.root / "media", sample_cache)
        made.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in made:
        gw.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Gateway]) -> Gateway:
    """A running gateway with the sample clip as token1."""
    return make_gateway([dict(FILE_SOURCE)])


@pytest.fixture
def camera_factory() -> Iterator[Callable[..., RtspCamera]]:
    """Factory of real GStreamer RTSP cameras: camera_factory(profile="high", audio="pcma")."""
    cameras: list[RtspCamera] = []

    def make(**options: Any) -> RtspCamera:
        camera = RtspCamera(**options)
        cameras.append(camera)
        return camera

    yield make
    for camera in cameras:
        camera.stop()


@pytest.fixture
def rtmp_origin(tmp_path: Path) -> Iterator[RtmpOrigin]:
    """nginx + libnginx-mod-rtmp on a free loopback port; .publish(name) starts an ffmpeg feed."""
    origin = RtmpOrigin(workdir=tmp_path / "rtmp")
    yield origin
    origin.stop()


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the whole run (Playwright, sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def camera_source(make_gateway: Callable[..., Gateway], camera_factory: Callable[..., RtspCamera]):
    """camera_source(**camera options) -> (gateway, session, camera): a real camera added as `cam`."""

    def make(**options: Any) -> tuple[Gateway, str, RtspCamera]:
        camera = camera_factory(**options)
        gw = make_gateway()
        session = gw.login()
        status, answer = gw.api("AddSrcRTSP", session=session, name="Cam", token="cam", url=camera.url)
        assert status == 200, answer
        return gw, session, camera

    return make
