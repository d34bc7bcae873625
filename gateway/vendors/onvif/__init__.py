"""ONVIF cameras: the device client (profiles, stream URI, PTZ) and WS-Discovery."""
