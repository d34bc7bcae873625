"""Everything the gateway does with aiortc, aioice and pylibsrtp beyond their public API.

install.py patches them once, at the first WebRTC viewer, after check.py has checked
every internal name used here; passthrough.py (no encoder, H.264 Main/High), connection.py
(per-peer hooks), takeover.py, lean_sender.py and rtcp_reader.py (the lean RTP/RTCP path).
"""
