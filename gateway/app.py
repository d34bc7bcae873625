"""The composition root: settings -> output registry -> gateway (hub, store) -> HTTP app
-> listeners. It owns the start-up and shutdown order."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

# The api modules register their commands with api.commands when imported.
from gateway.api import (  # noqa: F401
    cloud,
    commands,
    download,
    hikvision,
    onvif,
    openapi,
    record,
    session,
    sources,
    system,
)
from gateway.api import hls as hls_api  # noqa: F401
from gateway.api.forward import run_locally
from gateway.auth import default_password_users, upgrade_users
from gateway.config.file import Config
from gateway.config.settings import Settings
from gateway.core import Gateway
from gateway.formats import cloud_link
from gateway.hub.output import OutputRegistry
from gateway.ingest.cloud.endpoint import cloud_link_socket
from gateway.ingest.sample import SAMPLE_NAME, ensure_sample
from gateway.metrics import http as metrics
from gateway.outputs.cloud.link import CloudLink
from gateway.outputs.flv import http as flv
from gateway.outputs.flv.feed import FlvFeed
from gateway.outputs.hls import http as hls
from gateway.outputs.hls.responses import HlsAnswers
from gateway.outputs.hls.segmenter import HlsSegmenter
from gateway.outputs.rtmp.server import RtmpServer
from gateway.outputs.rtsp.feed import RtspFeed
from gateway.outputs.rtsp.server import RtspServer
from gateway.outputs.snapshot.snapshotter import Snapshotter
from gateway.outputs.webrtc import signalling as rtc
from gateway.outputs.webrtc import whep
from gateway.outputs.webrtc.feed import RtcFeed
from gateway.outputs.ws_fmp4 import socket as ws
from gateway.outputs.ws_fmp4.feed import Fmp4Feed
from gateway.playback import files as mediastore
from gateway.web.errors import fail
from gateway.web.fd_limit import connection_cap, raise_fd_limit
from gateway.web.front import BACKLOG, KEEPALIVE_TIMEOUT, ConnectionCap, FrontSite
from gateway.web.request import GATEWAY_KEY

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent
WWW_DIR = PROJECT_DIR / "www"


def output_registry(settings: Settings) -> OutputRegistry:
    """The outputs a stream can have, each made with its settings on first use."""
    registry = OutputRegistry()
    registry.register(Fmp4Feed, Fmp4Feed)
    registry.register(HlsSegmenter, lambda stream: HlsSegmenter(stream, settings.hls))
    registry.register(HlsAnswers, HlsAnswers.of)  # the HTTP side's answers, made once for all HLS clients
    registry.register(RtcFeed, RtcFeed)
    registry.register(RtspFeed, RtspFeed)
    registry.register(Snapshotter, Snapshotter)
    registry.register(FlvFeed, FlvFeed)
    return registry


@web.middleware
async def no_stack_traces(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Whatever breaks inside, a client gets a short JSON answer, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return fail(500, "internal error (see the gateway log)")


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WWW_DIR / "index.html")


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[no_stack_traces])
    app[GATEWAY_KEY] = gateway
    app[download.DOWNLOAD_LIMITS_KEY] = download.DownloadLimits(gateway.settings.download)
    app.router.add_get("/api/v1/h5swsapi", ws.h5swsapi)
    app.router.add_get(cloud_link.PATH, cloud_link_socket)  # edges dial in here (ingest/cloud)
    hls.add_routes(app)
    mediastore.add_routes(app)
    app.router.add_get(openapi.PATH, openapi.serve)  # before /api/v1/{command}, which would take it
    app.router.add_get("/api/v1/{command}", commands.handle)
    rtc.add_routes(app)
    whep.add_routes(app)
    hikvision.add_routes(app)
    metrics.add_routes(app)
    flv.add_routes(app)
    app.router.add_get("/", index)
    if WWW_DIR.is_dir():
        app.router.add_static("/", WWW_DIR, follow_symlinks=False)

    async def on_startup(_: web.Application) -> None:
        gateway.start()

    async def on_cleanup(_: web.Application) -> None:
        await gateway.stop()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def prepare(config: Config) -> None:
    """One-time set-up before serving: hash legacy passwords, make the sample clip."""
    if upgrade_users(config.users):
        config.save()
        log.info("stored passwords upgraded to salted PBKDF2")
    warn_open_doors(config.settings, config.users)
    uses_sample = any(s.type == "H5_FILE" and s.url == SAMPLE_NAME for s in config.sources.values())
    if uses_sample:
        ensure_sample(config.settings.system.media_dir)


def warn_open_doors(settings: Settings, users: list[dict[str, Any]]) -> None:
    """Say loudly at start when anyone who reaches the gateway can use it."""
    http = settings.http
    if not http.auth:
        log.warning(
            "http.bAuth is false: NO LOGIN is asked. Anyone who can reach %s (ports %s) can watch every "
            "camera and add, change or delete sources (DelSrc). Turn bAuth on, or bind to 127.0.0.1.",
            http.bind,
            ", ".join(
                str(p)
                for p in (
                    http.port,
                    http.https_port,
                    settings.webrtc.port,
                    settings.flv.port,
                    settings.rtsp.port,
                    settings.rtsp.tls_port,
                    settings.rtmp.port,
                    settings.rtmp.tls_port,
                )
                if p
            ),
        )
        return
    for name in default_password_users(users):
        log.warning("user %r still has the default password 12345: change it (the UpdateUser command)", name)


def tls_context(root: Path) -> ssl.SSLContext | None:
    cert, key = root / "certs" / "server.crt", root / "certs" / "server.key"
    if not (cert.exists() and key.exists()):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class StreamServer(Protocol):
    """A protocol server beside the HTTP app (RTSP, RTMP): listeners, and a close that ends its clients."""

    async def listen(self, port: int, context: ssl.SSLContext | None = None) -> None: ...
    async def close(self) -> None: ...


def serve_beside(app: web.Application, server: StreamServer, port: int, tls_port: int, root: Path) -> None:
    """Run `server` with the app: on `port`, and over TLS on `tls_port` when certs exist (0: off)."""
    if not port and not tls_port:
        return

    async def start(_: web.Application) -> None:
        if port:
            await server.listen(port)
        context = tls_context(root)
        if tls_port and context is not None:
            await server.listen(tls_port, context)

    async def stop(_: web.Application) -> None:
        await server.close()

    app.on_startup.append(start)
    app.on_cleanup.insert(0, stop)


def link_to_cloud(app: web.Application, gateway: Gateway) -> None:
    """As an edge (cloud.bEnable): the link out to the cloud, up while the app runs."""
    settings = gateway.settings.cloud
    if not settings.enable:
        return
    link = gateway.cloud_link = CloudLink(gateway, settings, partial(run_locally, gateway))
    if not settings.ssl:
        log.warning(
            "cloud.bSSL is false: the link to %s is plain ws, so video and commands cross unencrypted "
            "(the password never does); use the cloud's HTTPS port with bSSL true",
            settings.address,
        )

    async def start(_: web.Application) -> None:
        link.start()

    async def stop(_: web.Application) -> None:
        await link.stop()

    app.on_startup.append(start)
    app.on_cleanup.insert(0, stop)


async def serve(config: Config) -> web.AppRunner:
    """Start the HTTP (and HTTPS, when certs exist) listeners; returns the runner."""
    settings = config.settings
    gateway = Gateway(config, output_registry(settings))
    app = build_app(gateway)
    bind, root = settings.http.bind, settings.root
    serve_beside(app, RtspServer(gateway, bind), settings.rtsp.port, settings.rtsp.tls_port, root)
    serve_beside(app, RtmpServer(gateway, bind), settings.rtmp.port, settings.rtmp.tls_port, root)
    link_to_cloud(app, gateway)
    runner = web.AppRunner(app, access_log=None, handle_signals=True, keepalive_timeout=KEEPALIVE_TIMEOUT)
    await runner.setup()
    bind = settings.http.bind
    fd_limit = raise_fd_limit()
    cap = ConnectionCap(fd_limit, runner)

    def site(port: int, context: ssl.SSLContext | None = None) -> FrontSite:
        return FrontSite(
            runner,
            bind,
            port,
            route=hls.fast_route(app),
            internal_error=hls.internal_error,
            cap=cap,
            ssl_context=context,
        )

    http_port, https_port = settings.http.port, settings.http.https_port
    if http_port:
        await site(http_port).start()
        log.info("serving http://%s:%d/", bind, http_port)
    # MediaMTX gave viewers http://host:8889/{token}/; the same app on that port keeps
    # such links (and WHEP clients pointed there) working.
    extra_port = settings.webrtc.port
    if extra_port:
        await site(extra_port).start()
        log.info("serving the MediaMTX-style WebRTC URLs on http://%s:%d/{token}/", bind, extra_port)
    flv_port = settings.flv.port
    if flv_port:  # h5stream's HTTP-FLV port: the same app, for its /{token}.flv URLs
        await site(flv_port).start()
        log.info("serving HTTP-FLV and WS-FLV on http://%s:%d/{token}.flv", bind, flv_port)
    context = tls_context(settings.root)
    if https_port and context is not None:
        await site(https_port, context).start()
        log.info("serving https://%s:%d/", bind, https_port)
    elif https_port:
        log.info("HTTPS off: no certs/server.crt and certs/server.key (run ./gencert.sh)")
    cap.limit = connection_cap(fd_limit, len(cap.sites), BACKLOG)
    log.info("at most %d client connections at once", cap.limit)
    return runner
