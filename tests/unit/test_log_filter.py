"""Repeated warnings and tracebacks are written once per window, then counted."""

from __future__ import annotations

import io
import logging
import socket

from gateway.log_filter import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logger_into(stream: io.StringIO, clock: Clock) -> logging.Logger:
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatFilter(window=10.0, clock=clock))
    logger = logging.getLogger(f"test_log_filter.{id(stream)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    return logger


def accept_fails(logger: logging.Logger) -> None:
    """As CPython's accept loop at EMFILE: one traceback per failed accept."""
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        logger.error("socket.accept() out of system resource\nsocket: %r", socket.socket, exc_info=True)


def test_a_flood_of_one_error_is_one_traceback_per_window_and_a_count():
    out, clock = io.StringIO(), Clock()
    logger = logger_into(out, clock)
    for _ in range(10_000):
        accept_fails(logger)
        clock.now += 0.0009  # 1,100 a second for 9 s
    clock.now = 1010.5
    accept_fails(logger)
    text = out.getvalue()
    assert text.count("Traceback") == 2
    assert "[and 9999 more like it in the 10 s before]" in text
    assert len(text.splitlines()) < 20


def test_different_messages_and_info_lines_all_pass():
    out, clock = io.StringIO(), Clock()
    logger = logger_into(out, clock)
    for i in range(5):
        logger.warning("source cam%d: reconnecting", i)
        logger.info("same info line")
    logger.warning("source cam0: reconnecting")  # a repeat within the window
    lines = out.getvalue().splitlines()
    assert lines.count("same info line") == 5
    assert [line for line in lines if "reconnecting" in line] == [f"source cam{i}: reconnecting" for i in range(5)]
