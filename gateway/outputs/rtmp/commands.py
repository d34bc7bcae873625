"""NetConnection and NetStream commands (RTMP spec 7.2): reading a client's, writing the
server's `_result`, `_error` and `onStatus` answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.outputs.rtmp import amf0
from gateway.outputs.rtmp.chunk_writer import COMMAND_CSID, chunked
from gateway.outputs.rtmp.message import COMMAND_AMF0, COMMAND_AMF3, Message

MAX_NAME = 1024  # characters of a command, app or stream name kept


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    transaction: float
    object: dict[str, Any]  # the command object (connect's app, tcUrl...), {} when null
    args: list[Any]  # what follows it (publish's and play's stream name first)

    def text(self, index: int) -> str:
        """Argument `index` as a string ('' if missing or not one), bounded."""
        value = self.args[index] if index < len(self.args) else ""
        return value[:MAX_NAME] if isinstance(value, str) else ""


def parse(message: Message) -> Command:
    """A command message's values; amf0.Amf0Error if it is not one."""
    payload = message.payload
    if message.type == COMMAND_AMF3:  # AMF0 values behind a format byte
        payload = payload[1:]
    values = amf0.decode(payload)
    if len(values) < 2 or not isinstance(values[0], str) or not isinstance(values[1], float):
        raise amf0.Amf0Error("a command is a name and a transaction id")
    command_object = values[2] if len(values) > 2 and isinstance(values[2], dict) else {}
    return Command(values[0][:MAX_NAME], values[1], command_object, values[3:])


def command(name: str, transaction: float, *values: Any, stream_id: int = 0) -> bytes:
    return chunked(COMMAND_CSID, COMMAND_AMF0, 0, stream_id, amf0.encode(name, transaction, *values))


def connect_result(transaction: float) -> bytes:
    properties = {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0}
    info = {
        "level": "status",
        "code": "NetConnection.Connect.Success",
        "description": "Connection succeeded.",
        "objectEncoding": 0.0,
    }
    return command("_result", transaction, properties, info)


def connect_error(transaction: float, description: str) -> bytes:
    info = {"level": "error", "code": "NetConnection.Connect.Rejected", "description": description}
    return command("_error", transaction, None, info)


def result(transaction: float, value: Any = None) -> bytes:
    return command("_result", transaction, None, value)


def on_status(stream_id: int, level: str, code: str, description: str) -> bytes:
    info = {"level": level, "code": code, "description": description}
    return command("onStatus", 0.0, None, info, stream_id=stream_id)
