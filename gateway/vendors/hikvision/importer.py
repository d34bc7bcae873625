"""Import the cameras of HikCentral Connect as H5_HIKVISION sources, one per camera.

devices/get → cameras/get for each device → a source with token = camera id and
name = camera name. Running it again changes only what changed on the platform (a
renamed camera, a camera moved to another device) and keeps what an administrator set
on the source (nConnectType, bEnableAudio, ...). Cameras gone from the platform are
reported, not deleted: the administrator decides (DelSrc). Everything that changes is
saved in one write of h5ss.conf.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.config.file import ConfigError, SourceConf, valid_token
from gateway.vendors.hikvision.client import Camera, HikClient, HikError, HikUnavailable

SOURCE_TYPE = "H5_HIKVISION"
_running = asyncio.Lock()  # one import at a time


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # strToken, strName, strReason
    gone: list[dict[str, str]] = field(default_factory=list)  # sources whose camera the platform no longer has

    def answer(self) -> dict[str, Any]:
        return {
            "nAdded": len(self.added),
            "nUpdated": len(self.updated),
            "nUnchanged": len(self.unchanged),
            "nFailed": len(self.failed),
            "nGone": len(self.gone),
            "added": self.added,
            "updated": self.updated,
            "failed": self.failed,
            "gone": self.gone,
        }


async def import_cameras(
    client: HikClient, sources: Mapping[str, SourceConf], put_sources: Callable[[list[SourceConf]], None]
) -> ImportReport:
    """Create or update one source per platform camera. `sources`: the gateway's, by token;
    `put_sources`: adds or replaces several at once (one save of the config). HikError when
    the platform cannot list its devices at all; a device whose cameras cannot be listed
    is a failure in the report, and its sources are not called gone."""
    async with _running:
        report = ImportReport()
        cameras: dict[str, Camera] = {}
        unlisted: set[str] = set()  # device serials whose cameras we could not read
        for device in await client.devices():
            if not device.serial:
                report.failed.append(
                    {"strToken": "", "strName": device.name, "strReason": f"device {device.id} has no serial number"}
                )
                continue
            try:
                found = await client.cameras(device.serial)
            except HikUnavailable:
                raise  # the platform went away: no half import
            except HikError as e:
                unlisted.add(device.serial)
                report.failed.append({"strToken": "", "strName": device.name, "strReason": str(e)})
                continue
            for camera in found:
                cameras.setdefault(camera.id, camera)

        changes: list[SourceConf] = []
        for camera in cameras.values():
            conf, reason = _source_for(sources, camera)
            if reason:
                report.failed.append({"strToken": camera.id, "strName": camera.name, "strReason": reason})
            elif conf is None:
                report.unchanged.append(camera.id)
            else:
                (report.updated if camera.id in sources else report.added).append(camera.id)
                changes.append(conf)

        for conf in sources.values():
            if conf.type == SOURCE_TYPE and conf.token not in cameras and conf["strHikDeviceSerial"] not in unlisted:
                report.gone.append({"strToken": conf.token, "strName": conf.name})
        if changes:
            put_sources(changes)
        return report


def _source_for(sources: Mapping[str, SourceConf], camera: Camera) -> tuple[SourceConf | None, str]:
    """(the new or updated source, "") or (None, "") when it is up to date, or (None, why not)."""
    if not valid_token(camera.id):
        return None, f"camera id {camera.id!r} cannot be a token (1-64 letters, digits, '-', '_' or '.')"
    fields = {
        "strName": camera.name.strip() or camera.id,
        "strToken": camera.id,
        "nType": SOURCE_TYPE,
        "strHikDeviceSerial": camera.device_serial,
        "strHikCameraId": camera.id,
    }
    existing = sources.get(camera.id)
    if existing is not None and existing.type != SOURCE_TYPE:
        return None, f"token {camera.id!r} is already used by an {existing.type} source"
    merged = {**existing.raw, **fields} if existing is not None else fields
    if existing is not None and merged == existing.raw:
        return None, ""
    try:
        return SourceConf.from_json(dict(merged), "source"), ""
    except ConfigError as e:
        return None, str(e)
