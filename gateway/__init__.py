"""h5ss: a camera media gateway (RTSP/RTMP/file sources to WebSocket fMP4, WebRTC, HLS)."""

__version__ = "0.1.0"
