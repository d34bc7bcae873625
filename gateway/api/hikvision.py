"""The HikCentral Connect commands: import every camera of the platform as a source.

`GET /api/v1/AddDeviceHik` (h5stream style) and `POST /api/hikvision/initialize` (the
call the old Node backend's frontend makes) run the same import and give the same
answer: counts and lists of added, updated, unchanged, failed and gone cameras.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api.commands import command, dispatch
from gateway.api.schema import INT, list_of, obj
from gateway.auth import Session
from gateway.vendors.hikvision.client import HikError
from gateway.vendors.hikvision.importer import import_cameras
from gateway.web.errors import ApiError, ok
from gateway.web.request import gateway


@command(
    "AddDeviceHik",
    role="Administrator",
    answer=obj(
        nAdded=INT,
        nUpdated=INT,
        nUnchanged=INT,
        nFailed=INT,
        nGone=INT,
        added=list_of({}),
        updated=list_of({}),
        failed=list_of({}),
        gone=list_of({}),
    ),
    errors=(502,),
)
async def add_device_hik(request: web.Request, _: Session | None) -> web.Response:
    gw = gateway(request)
    if gw.hikvision is None:
        raise ApiError(400, "HikCentral Connect is not configured (hikvision.strHost, strAppKey, strSecretKey)")
    try:
        report = await import_cameras(gw.hikvision, gw.config.sources, gw.put_sources)
    except HikError as e:
        raise ApiError(502, str(e)) from None
    answer = report.answer()
    return ok(
        f"{answer['nAdded']} added, {answer['nUpdated']} updated, {answer['nUnchanged']} unchanged, "
        f"{answer['nFailed']} failed, {answer['nGone']} gone",
        **answer,
    )


async def initialize(request: web.Request) -> web.StreamResponse:
    """POST /api/hikvision/initialize: AddDeviceHik under the old backend's path (session= as usual)."""
    return await dispatch(request, "AddDeviceHik")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/hikvision/initialize", initialize)
