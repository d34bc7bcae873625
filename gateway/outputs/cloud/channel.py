"""One link channel on the edge: a local stream's packets for the cloud, in a bounded queue.

The channel is a subscriber of the local stream. Its parameters go out as a control
message (which the link writer sends before any media), its packets as media frames
queued here until the writer takes them. A link slower than the stream fills the queue;
then the channel skips to the next keyframe (hub/backpressure.py), so neither the stream
nor the link's control messages ever wait for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gateway.formats import cloud_link
from gateway.hub.backpressure import KeyframeSkip
from gateway.hub.packet import MediaPacket, StreamParams
from gateway.hub.stream import Stream

QUEUE_BYTES = 4 << 20  # media a channel holds for a slow link before it skips to a keyframe


class LinkChannel:
    def __init__(
        self,
        channel: int,
        token: str,
        profile: str,
        stream: Stream,
        send_control: Callable[[str], None],
        wake: Callable[[], None],
    ):
        self.channel = channel
        self.token = token  # and profile: what the cloud asked for (a source without a sub stream serves its main one)
        self.profile = profile
        self.stream = stream
        self._send_control = send_control
        self._wake = wake
        self.frames: deque[bytes] = deque()
        self.queued = 0  # bytes in `frames`
        self.skip = KeyframeSkip()
        self.sent_frames = 0
        self.sent_bytes = 0

    def open(self) -> None:
        """Take the stream (started if it is not, its viewer count up): parameters and its GOP come at once."""
        self.stream.attach(self)
        self.stream.acquire()

    def close(self) -> None:
        """Give the stream back (it lingers as after any viewer); what is queued is dropped."""
        self.stream.detach(self)
        self.stream.release()
        self.frames.clear()
        self.queued = 0

    def on_params(self, params: StreamParams) -> None:
        # Media queued under the old parameters would follow the new ones: drop it (the
        # stream's next packets start at a keyframe).
        self.frames.clear()
        self.queued = 0
        self._send_control(cloud_link.encode("params", channel=self.channel, **cloud_link.params_to_json(params)))

    def on_packet(self, packet: MediaPacket) -> None:
        frame = cloud_link.pack_media(self.channel, packet)
        behind = bool(self.frames) and self.queued + len(frame) > QUEUE_BYTES
        if not self.skip.admit(packet.kind == "video" and packet.keyframe, behind):
            return
        self.frames.append(frame)
        self.queued += len(frame)
        self._wake()

    def pop(self) -> bytes:
        """The oldest queued frame, for the writer (counted as sent)."""
        frame = self.frames.popleft()
        self.queued -= len(frame)
        self.sent_frames += 1
        self.sent_bytes += len(frame)
        return frame
