"""Command line: `h5ss [--conf conf/h5ss.conf]` or `python -m gateway`.

Exit codes: 0 normal stop, 2 bad config (one line naming the key), 3 cannot listen.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from gateway.app import prepare, serve
from gateway.config.file import Config, ConfigError, load_config
from gateway.log_filter import bound_repeats
from gateway.redact import RedactingFormatter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="h5ss", description="h5ss camera media gateway")
    parser.add_argument("--conf", default="conf/h5ss.conf", help="config file (default: conf/h5ss.conf)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.conf)
    except ConfigError as e:
        print(f"h5ss: config error: {e}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler()  # camera URLs in any line (FFmpeg's text too) redacted
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.settings.system.log_level.upper(), handlers=[handler])
    bound_repeats(logging.getLogger())
    logging.getLogger("libav").setLevel(logging.ERROR)
    for noisy in ("aiortc", "aioice"):  # per-packet debug lines
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    prepare(config)
    return asyncio.run(run(config))


async def run(config: Config) -> int:
    try:
        runner = await serve(config)
    except OSError as e:
        print(f"h5ss: cannot listen: {e.strerror} ({e})", file=sys.stderr)
        return 3
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
