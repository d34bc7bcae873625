"""The one back-pressure policy: a client that falls behind skips to the next keyframe.

Every client has a bounded queue (a socket's send buffer, a peer's frame queue). When it
would overflow, the client drops what would overflow it and then everything up to the
next keyframe that it can take, so the stream never waits for it and memory never grows,
and its picture resumes cleanly instead of decoding garbage.
"""

from __future__ import annotations


class KeyframeSkip:
    """One client's state under the policy; `skips` counts the times it fell behind."""

    __slots__ = ("skipping", "skips")

    def __init__(self) -> None:
        self.skipping = False
        self.skips = 0

    def fall_behind(self) -> None:
        """The client could not take a frame: skip until a keyframe it can take."""
        if not self.skipping:
            self.skipping = True
            self.skips += 1

    def restart(self) -> None:
        """The client's queue was emptied and refilled from a keyframe (a GOP replay): no skipping."""
        self.skipping = False

    def admit(self, keyframe: bool, behind: bool = False) -> bool:
        """Whether to send a frame now. `behind`: the client's queue cannot take it."""
        if behind:
            self.fall_behind()
        if self.skipping and (behind or not keyframe):
            return False
        self.skipping = False
        return True
