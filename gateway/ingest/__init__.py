"""Source types: each knows only how to get an input to demux."""

from __future__ import annotations

from gateway.config.file import Config, SourceConf
from gateway.ingest.base import InputSpec, Source, SourceError
from gateway.ingest.file import FileSource
from gateway.ingest.hikvision import HikvisionSource
from gateway.ingest.onvif import OnvifSource
from gateway.ingest.stream import StreamSource
from gateway.vendors.hikvision.client import HikClient


def make_source(conf: SourceConf, config: Config, hikvision: HikClient | None = None) -> Source:
    """The Source for a config entry; SourceError says why one cannot be made.
    `hikvision`: the gateway's HikCentral Connect client, when one is configured."""
    if conf.type == "H5_FILE":
        return FileSource(config.media_dir, conf["strUrl"])
    if conf.type == "H5_STREAM":
        return StreamSource(conf["strUrl"], conf["strUser"], conf["strPasswd"], conf["nRTSPType"])
    if conf.type == "H5_ONVIF":
        return OnvifSource.from_conf(conf)
    if conf.type == "H5_HIKVISION":
        return HikvisionSource.from_conf(conf, hikvision)
    raise SourceError(f"source type {conf.type} is not supported yet")


__all__ = ["InputSpec", "Source", "SourceError", "make_source"]
