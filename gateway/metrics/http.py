"""GET /metrics: the Prometheus text exposition of the gateway's metrics (collector.py).

Readable with a session of any role (`?session=`), or by a scraper with the bearer token
of `http.strMetricsToken` (`Authorization: Bearer …`; empty: no token is accepted); open
to all when `http.bAuth` is off, as the API is.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from gateway.auth import AuthError
from gateway.core import Gateway
from gateway.metrics.collector import GatewayCollector
from gateway.metrics.loop_lag import LoopLag
from gateway.web.errors import fail
from gateway.web.request import GATEWAY_KEY, auth_required, gateway, session_of

REGISTRY_KEY = web.AppKey("metrics_registry", CollectorRegistry)
LOOP_LAG_KEY = web.AppKey("loop_lag", LoopLag)


def add_routes(app: web.Application) -> None:
    """The route, the registry with the gateway's and the process's collectors, and the
    loop-lag timer (running while the app is)."""
    lag = LoopLag()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector(namespace="h5ss", registry=None))
    registry.register(GatewayCollector(app[GATEWAY_KEY], lag))
    app[REGISTRY_KEY] = registry
    app[LOOP_LAG_KEY] = lag
    app.router.add_get("/metrics", metrics)

    async def start(_: web.Application) -> None:
        lag.start()

    async def stop(_: web.Application) -> None:
        lag.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


def check_scraper(gw: Gateway, request: web.Request) -> None:
    """AuthError unless the request may read the metrics: a bearer token, when sent, must
    be the configured one; without one, the session must be live."""
    if not auth_required(gw):
        return
    header = request.headers.get("Authorization")
    if header is None:
        session_of(gw, request.query.get("session"))
        return
    scheme, _, token = header.partition(" ")
    expected = gw.settings.http.metrics_token
    if (
        scheme.lower() != "bearer"
        or not expected
        or not hmac.compare_digest(token.strip().encode("utf-8", "surrogateescape"), expected.encode())
    ):
        raise AuthError("wrong or unconfigured bearer token (http.strMetricsToken)")


async def metrics(request: web.Request) -> web.Response:
    try:
        check_scraper(gateway(request), request)
    except AuthError as e:
        response = fail(401, str(e))
        response.headers["WWW-Authenticate"] = 'Bearer realm="h5ss metrics"'
        return response
    body = generate_latest(request.app[REGISTRY_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
