"""RTMP: publishing into the gateway and playing from it (`rtmp://host:8935/live/{token}`).

Written here, not taken from PyPI: pyrtmp (asyncio) implements publish only, with no play
command and no way to send media to a player, and parses every chunk header with
`bitstring`; rtmpy needs Twisted and is unmaintained; python-librtmp is a client. The
protocol the gateway needs is small: handshake.py, chunk_reader.py / chunk_writer.py,
amf0.py, commands.py, and connection.py's states; media comes in through
ingest/publish/flv_media.py and goes out through the FLV feed (player.py).
"""
