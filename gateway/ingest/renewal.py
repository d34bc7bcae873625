"""Make-before-break renewal of an expiring input (a signed URL), in a thread of its own."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import av

from gateway.hub.packet import StreamParams
from gateway.ingest.base import InputSpec, SourceError
from gateway.ingest.opened import OPEN_TIMEOUT, Event, OpenInput

log = logging.getLogger(__name__)

RENEW_TIMEOUT = OPEN_TIMEOUT + 5.0  # for the successor to open and reach a keyframe


class Renewal:
    """A fresh input opened beside the current one, in its own thread, and read up to
    its first keyframe; the demux thread then switches over to it (make-before-break)."""

    def __init__(self, name: str, resolve: Callable[[], InputSpec], enable_audio: bool, stopping: threading.Event):
        self.name = name
        self.resolve = resolve
        self.enable_audio = enable_audio
        self.stopping = stopping  # the demux thread's: set when it stops
        self.input: OpenInput | None = None
        self.events: Iterator[Event] | None = None
        self.params: StreamParams | None = None
        self.error: str | None = None
        self.retry_after = 0.0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._deadline = float("inf")  # for opening it and reaching a keyframe, once resolved
        threading.Thread(target=self._run, name=f"renew-{name}", daemon=True).start()

    def _halted(self) -> bool:
        if self.stopping.is_set() or self._abandoned:
            return True
        return not self.done.is_set() and time.monotonic() > self._deadline

    def _run(self) -> None:
        opened: OpenInput | None = None
        try:
            spec = self.resolve()
            self._deadline = time.monotonic() + RENEW_TIMEOUT
            opened = OpenInput(spec, self.enable_audio)
            events = opened.events(self._halted, self.stopping.wait)
            for kind, value in events:
                if kind == "start":
                    assert isinstance(value, StreamParams)
                    self.params = value
                    break
            else:
                raise SourceError("no keyframe from the renewed input")
        except SourceError as e:
            self.error, self.retry_after = str(e), e.retry_after
        except av.error.FFmpegError as e:
            self.error = e.strerror or type(e).__name__
        except Exception as e:  # a bug must not kill the thread silently
            log.exception("source %s: unexpected error while renewing", self.name)
            self.error = f"internal error: {type(e).__name__}"
        with self._lock:
            if self._abandoned or self.error:
                if opened is not None:
                    opened.close()
            else:
                self.input, self.events = opened, events
            self.done.set()

    def ready(self, timeout: float = 0.0) -> bool:
        return self.done.wait(timeout) and self.input is not None

    def abandon(self) -> None:
        """Not needed after all: close what it opened (now, or when it is done)."""
        with self._lock:
            self._abandoned = True
            if self.input is not None:
                self.input.close()
                self.input = None
