"""h5stream's recording, snapshot, image and search commands.

Everything a client sends is checked before anything is written: a bad name, day, time,
zone or duration is a 400 and leaves no file or directory behind. Files are answered as
`strPath` URLs under `/mediastore/`, where they are served to logged-in users.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api.commands import bool_param, command, enum_param, param, token_param
from gateway.api.schema import (
    FILENAME_SCHEMA,
    INT,
    TEXT,
    TIME_SCHEMA,
    ZONE_SCHEMA,
    Param,
    choice,
    flag,
    list_of,
    obj,
    shaped,
    token,
    whole,
)
from gateway.auth import Session
from gateway.config.file import whole_number
from gateway.hub.stream import Stream, StreamNotReady
from gateway.outputs.snapshot.files import save_snapshot
from gateway.outputs.snapshot.snapshotter import Snapshotter
from gateway.store.index import KINDS, MediaEntry
from gateway.store.layout import Place, check_name
from gateway.store.timefmt import format_epoch, parse_time
from gateway.web.errors import ApiError, ok
from gateway.web.request import gateway

MAX_RECORD_SECONDS = 86400
STREAM_READY_TIMEOUT = 10.0
SNAPSHOT_TIMEOUT = 10.0

# What _given_place reads (PathRecord, PathSnapshot).
PLACE_PARAMS: tuple[Param, ...] = (
    shaped("start1", {"type": "string", "maxLength": 16, "pattern": r"^\d{4}-\d{2}-\d{2}$"}, required=True),
    shaped("start2", {"type": "string", "maxLength": 16, "pattern": r"^\d{2}-\d{2}-\d{2}$"}, required=True),
    shaped("tz", ZONE_SCHEMA, about="e.g. +08; default the gateway's zone"),
)
FILE_ANSWER = obj(strPath=TEXT)


def media_url(path: str) -> str:
    return "/mediastore/" + path


def _stream(request: web.Request) -> Stream:
    stream = gateway(request).stream(token_param(request, remote=True))
    if stream is None:
        raise ApiError(503, "source is disabled (see GetSrc strLastError)")
    return stream


def _duration(request: web.Request, required: bool = True) -> int | None:
    text = request.query.get("duration")
    if text is None:
        if required:
            raise ApiError(400, "missing parameter 'duration'")
        return None
    seconds = whole_number(text)
    if seconds is None or not 1 <= seconds <= MAX_RECORD_SECONDS:
        raise ApiError(400, f"duration must be whole seconds, 1-{MAX_RECORD_SECONDS}")
    return seconds


def _given_place(request: web.Request, kind: str, token: str) -> Place:
    return Place.given(
        kind, token, param(request, "start1", max_len=16), param(request, "start2", max_len=16), request.query.get("tz")
    )


async def _until_ready(stream: Stream) -> None:
    """Answer only once there is media to record (503 if the source gives none)."""
    stream.acquire()
    try:
        await stream.wait_ready(STREAM_READY_TIMEOUT)
    except StreamNotReady as e:
        raise ApiError(503, str(e)) from None
    finally:
        stream.release()


# -- recording ----------------------------------------------------------------------------


def _duration_param(required: bool) -> Param:
    return whole("duration", 1, MAX_RECORD_SECONDS, required=required, about="seconds")


def _filename_param(required: bool) -> Param:
    return shaped("filename", FILENAME_SCHEMA, required=required)


@command(
    "Record",
    role="Operator",
    params=(token(), _duration_param(True), _filename_param(False)),
    answer=obj(strPath=TEXT, nDuration=INT),
    errors=(503,),
)
async def record(request: web.Request, _: Session | None) -> web.Response:
    return await _record(request, in_given_place=False)


@command(
    "PathRecord",
    role="Operator",
    params=(token(), *PLACE_PARAMS, _duration_param(True), _filename_param(True)),
    answer=obj(strPath=TEXT, nDuration=INT),
    errors=(503,),
)
async def path_record(request: web.Request, _: Session | None) -> web.Response:
    return await _record(request, in_given_place=True)


async def _record(request: web.Request, in_given_place: bool) -> web.Response:
    """Record (named after the token by default) and PathRecord (into the folders the
    client names, with a name it must give): one job of `duration` seconds."""
    stream = _stream(request)
    place = _given_place(request, "record", stream.token) if in_given_place else None
    duration = _duration(request)
    assert duration is not None  # required
    default_name = None if in_given_place else stream.token
    name = check_name(param(request, "filename", default_name, max_len=128), "record")
    await _until_ready(stream)
    job = gateway(request).recordings.record(stream, name, place, duration)
    return ok("recording", strPath=media_url(job.first_path or ""), nDuration=duration)


@command(
    "ManualRecordStart", role="Operator", params=(token(), _duration_param(False)), answer=FILE_ANSWER, errors=(503,)
)
async def manual_record_start(request: web.Request, _: Session | None) -> web.Response:
    stream = _stream(request)
    duration = _duration(request, required=False)
    if stream.token in gateway(request).recordings.manual:
        raise ApiError(400, f"{stream.token} is already being recorded manually (ManualRecordStop first)")
    await _until_ready(stream)
    job = gateway(request).recordings.manual_start(stream, duration)
    return ok("recording", strPath=media_url(job.first_path or ""))


@command("ManualRecordStop", role="Operator", params=(token(),), answer=obj(strPath=TEXT, path=list_of(TEXT)))
async def manual_record_stop(request: web.Request, _: Session | None) -> web.Response:
    token = token_param(request, remote=True)
    paths = gateway(request).recordings.manual_stop(token)
    return ok("stopped", strPath=media_url(paths[0]) if paths else "", path=[media_url(p) for p in paths])


@command("SetRec", role="Administrator", params=(token(), flag("enable", "default true")))
async def set_rec(request: web.Request, _: Session | None) -> web.Response:
    """h5ss: turn a source's continuous recording (its bRec) on or off."""
    token = token_param(request)
    enable = bool_param(request, "enable", True)
    gateway(request).set_recording(token, enable)
    return ok(f"continuous recording of {token} {'on' if enable else 'off'}")


# -- snapshots ----------------------------------------------------------------------------


async def _snapshot(request: web.Request, stream: Stream, name: str, place: Place | None) -> web.Response:
    try:
        entry = await save_snapshot(gateway(request).store, stream.output(Snapshotter), name, place, SNAPSHOT_TIMEOUT)
    except StreamNotReady as e:
        raise ApiError(503, str(e)) from None
    return ok("snapshot", strPath=media_url(entry.path), strStartTime=_start_text(entry))


@command(
    "Snapshot",
    role="Operator",
    params=(token(), _filename_param(False)),
    answer=obj(strPath=TEXT, strStartTime=TEXT),
    errors=(503,),
)
async def snapshot(request: web.Request, _: Session | None) -> web.Response:
    stream = _stream(request)
    name = check_name(param(request, "filename", stream.token, max_len=128), "snapshot")
    return await _snapshot(request, stream, name, None)


@command(
    "PathSnapshot",
    role="Operator",
    params=(token(), *PLACE_PARAMS, _filename_param(True)),
    answer=obj(strPath=TEXT, strStartTime=TEXT),
    errors=(503,),
)
async def path_snapshot(request: web.Request, _: Session | None) -> web.Response:
    stream = _stream(request)
    place = _given_place(request, "snapshot", stream.token)
    name = check_name(param(request, "filename", max_len=128), "snapshot")
    return await _snapshot(request, stream, name, place)


# -- search -------------------------------------------------------------------------------


def _start_text(entry: MediaEntry) -> str:
    return format_epoch(entry.start, entry.tz)


@command(
    "Search",
    params=(
        choice("type", KINDS),
        token(required=False, about="only this token's files (also of a deleted source)"),
        shaped("start", TIME_SCHEMA, required=True),
        shaped("end", TIME_SCHEMA, required=True),
    ),
    answer=obj(
        record=list_of(obj(strToken=TEXT, strStartTime=TEXT, strDuration=TEXT, strPath=TEXT, nSize=INT)),
    ),
)
async def search(request: web.Request, _: Session | None) -> web.Response:
    kind = enum_param(request, "type", KINDS, "record")
    token = token_param(request, existing=False) if "token" in request.query else None  # deleted sources too
    start = parse_time(param(request, "start", max_len=64)).timestamp()
    end = parse_time(param(request, "end", max_len=64)).timestamp()
    if end <= start:
        raise ApiError(400, "end must be after start")
    entries = gateway(request).media_index.search(kind, token, start, end)
    found = [
        {
            "strToken": e.token,
            "strStartTime": _start_text(e),
            "strDuration": str(round(e.duration)),
            "strPath": media_url(e.path),
            "nSize": e.size,
        }
        for e in entries
    ]
    return web.json_response({"bStatus": True, "strCode": "ok", "record": found})


# -- images -------------------------------------------------------------------------------


@command("GetImage", params=(token(),), media_type="image/jpeg", errors=(503,))
async def get_image(request: web.Request, _: Session | None) -> web.StreamResponse:
    stream = gateway(request).stream(token_param(request, remote=True))
    if stream is None:
        raise ApiError(503, "source is disabled (see GetSrc strLastError)")
    try:
        jpeg = await stream.output(Snapshotter).jpeg(SNAPSHOT_TIMEOUT)
    except StreamNotReady as e:
        raise ApiError(503, str(e)) from None
    except ValueError as e:
        raise ApiError(503, f"snapshot failed: {e}") from None
    return web.Response(body=jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})
