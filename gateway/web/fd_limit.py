"""File descriptors: the process's limit raised as far as allowed, and the share of it that
client connections may take (ConnectionCap in front.py), so that at the cap cameras,
recordings and files still get theirs and accept() never fails for want of one."""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)

RESERVE_MIN = 128  # fds kept for cameras, recordings, files, WebRTC sockets ...
RESERVE_SHARE = 8  # ... or 1/8 of the limit, when more


def raise_fd_limit() -> int:
    """Set the soft RLIMIT_NOFILE to the hard one (where the system allows); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:  # e.g. an unlimited hard limit above the kernel's nr_open
            log.warning("file descriptor limit: cannot raise the soft limit %d to the hard one %d: %s", soft, hard, e)
        else:
            log.info("file descriptor limit: soft %d raised to the hard limit %d", soft, hard)
            soft = hard
    else:
        log.info("file descriptor limit: %d (soft = hard)", soft)
    return soft


def connection_cap(fd_limit: int, listeners: int, backlog: int) -> int:
    """Client connections allowed: the limit, less a reserve (max(RESERVE_MIN, limit/8)), less
    `backlog` per listening port (connections accepted in one loop turn hold an fd before
    the front can refuse them). At least 16."""
    return max(16, fd_limit - max(RESERVE_MIN, fd_limit // RESERVE_SHARE) - backlog * listeners)
