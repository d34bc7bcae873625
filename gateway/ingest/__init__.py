"""Source types: each knows only how to get an input to demux."""

from __future__ import annotations

from pathlib import Path

from gateway.config.file import SourceConf
from gateway.hub.profile import SUB
from gateway.ingest.base import InputSpec, Source, SourceError
from gateway.ingest.file import FileSource
from gateway.ingest.hikvision import HikvisionSource
from gateway.ingest.onvif import OnvifSource
from gateway.ingest.stream import StreamSource
from gateway.vendors.hikvision.client import HikClient


def make_source(conf: SourceConf, media_dir: Path, hikvision: HikClient | None = None) -> Source:
    """The Source for a config entry; SourceError says why one cannot be made.
    `media_dir`: where H5_FILE sources may read; `hikvision`: the gateway's HikCentral
    Connect client, when one is configured."""
    if conf.type == "H5_FILE":
        return FileSource(media_dir, conf.url)
    if conf.type == "H5_STREAM":
        return StreamSource(conf.url, conf.user, conf.password, conf.rtsp_type)
    if conf.type == "H5_ONVIF":
        return OnvifSource.from_conf(conf)
    if conf.type == "H5_HIKVISION":
        return HikvisionSource.from_conf(conf, hikvision)
    raise SourceError(f"source type {conf.type} is not supported yet")


def make_sub_source(conf: SourceConf, hikvision: HikClient | None = None) -> Source | None:
    """The Source of a config entry's sub stream, None when it has none (files never do);
    SourceError says why one cannot be made. ONVIF: the sub profile named, or with
    bOnvifProfileAuto the camera's second H.264 or H.265 one; H5_STREAM: strUrlSub with the same
    credentials; HikCentral: the camera's sub quality."""
    if conf.type == "H5_STREAM" and conf.url_sub:
        return StreamSource(conf.url_sub, conf.user, conf.password, conf.rtsp_type)
    if conf.type == "H5_ONVIF" and (conf["strOnvifProfileSub"] or conf["bOnvifProfileAuto"]):
        return OnvifSource.from_conf(conf, SUB)
    if conf.type == "H5_HIKVISION":
        return HikvisionSource.from_conf(conf, hikvision, SUB)
    return None


__all__ = ["InputSpec", "Source", "SourceError", "make_source", "make_sub_source"]
