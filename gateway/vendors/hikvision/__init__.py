"""HikCentral Connect: the OpenAPI client and the camera import."""
