"""H5_FILE: a clip inside the media directory, looped at real-time speed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.ingest.base import InputSpec, SourceError

FILE_EXTENSIONS = (".mp4", ".mkv", ".ts", ".flv", ".mov", ".m4v")


def media_path(media_dir: Path, name: str) -> Path:
    """The file a source names, refusing anything that leaves the media directory."""
    if not name or "\x00" in name:
        raise SourceError("file name is empty")
    if ":" in name.split("/", 1)[0] and not name.startswith("/"):
        raise SourceError(f"{name!r}: only plain file names inside the media directory are allowed")
    root = media_dir.resolve()
    path = (root / name).resolve()
    if root != path and root not in path.parents:
        raise SourceError(f"{name!r} is outside the media directory")
    if path.suffix.lower() not in FILE_EXTENSIONS:
        raise SourceError(f"{name!r}: file type must be one of {', '.join(FILE_EXTENSIONS)}")
    return path


class FileSource:
    def __init__(self, media_dir: Path, name: str):
        self.path = media_path(media_dir, name)

    async def resolve(self) -> InputSpec:
        if not self.path.is_file():
            raise SourceError(f"file {self.path.name!r} not found in the media directory")
        return InputSpec(str(self.path), {"protocol_whitelist": "file"}, realtime=True, label=self.path.name)

    def describe(self) -> dict[str, Any]:
        return {}
