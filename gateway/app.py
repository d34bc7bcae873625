"""Builds the aiohttp application and owns the start-up and shutdown order."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from aiohttp import web

from gateway.api import hikvision, onvif, record, v1  # noqa: F401  (hikvision, onvif, record register their commands with v1)
from gateway.auth import upgrade_users
from gateway.config.file import Config
from gateway.core import Gateway
from gateway.outputs.hls import http as hls
from gateway.outputs.webrtc import signalling as rtc
from gateway.outputs.ws_fmp4 import socket as ws
from gateway.playback import files as mediastore
from gateway.sample import SAMPLE_NAME, ensure_sample
from gateway.web.front import FrontSite

log = logging.getLogger(__name__)

PROJECT_DIR = Path(__file__).resolve().parent.parent
WWW_DIR = PROJECT_DIR / "www"


@web.middleware
async def no_stack_traces(request: web.Request, handler):
    """Whatever breaks inside, a client gets a short JSON answer, never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return v1.fail(500, "internal error (see the gateway log)")


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WWW_DIR / "index.html")


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application(middlewares=[no_stack_traces])
    app[v1.GATEWAY_KEY] = gateway
    app.router.add_get("/api/v1/h5swsapi", ws.h5swsapi)
    hls.add_routes(app)
    mediastore.add_routes(app)
    app.router.add_get("/api/v1/{command}", v1.handle)
    rtc.add_routes(app)
    hikvision.add_routes(app)
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
    uses_sample = any(s.type == "H5_FILE" and s["strUrl"] == SAMPLE_NAME for s in config.sources.values())
    if uses_sample:
        ensure_sample(config.media_dir)


def tls_context(config: Config) -> ssl.SSLContext | None:
    cert, key = config.root / "certs" / "server.crt", config.root / "certs" / "server.key"
    if not (cert.exists() and key.exists()):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def serve(config: Config) -> web.AppRunner:
    """Start the HTTP (and HTTPS, when certs exist) listeners; returns the runner."""
    gateway = Gateway(config)
    runner = web.AppRunner(build_app(gateway), access_log=None, handle_signals=True)
    await runner.setup()
    app = runner.app
    bind = config.get("http", "strBindAddress")

    def site(port: int, context: ssl.SSLContext | None = None) -> FrontSite:
        return FrontSite(
            runner, bind, port, route=hls.fast_route(app), internal_error=hls.internal_error, ssl_context=context
        )

    http_port, https_port = config.get("http", "nHTTPPort"), config.get("http", "nHTTPSPort")
    if http_port:
        await site(http_port).start()
        log.info("serving http://%s:%d/", bind, http_port)
    # MediaMTX gave viewers http://host:8889/{token}/; the same app on that port keeps
    # such links (and WHEP clients pointed there) working.
    extra_port = config.get("webrtc", "nWebRTCPort")
    if extra_port:
        await site(extra_port).start()
        log.info("serving the MediaMTX-style WebRTC URLs on http://%s:%d/{token}/", bind, extra_port)
    context = tls_context(config)
    if https_port and context is not None:
        await site(https_port, context).start()
        log.info("serving https://%s:%d/", bind, https_port)
    elif https_port:
        log.info("HTTPS off: no certs/server.crt and certs/server.key (run ./gencert.sh)")
    return runner
