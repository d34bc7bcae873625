#!/usr/bin/env bash
# Install the Debian packages the real-parts tests use: ffmpeg, nginx with the
# RTMP module, Debian's Chromium (Playwright drives it; it never downloads one),
# and GStreamer with its RTSP server and Python bindings for the system python
# (tests/fixtures/rtsp_camera.py).  Idempotent, and quick when all is there:
# apt-get is not run at all then.  Needs root (as in CI) or sudo.
set -euo pipefail

packages=(
    ffmpeg
    nginx
    libnginx-mod-rtmp
    chromium
    fonts-liberation
    python3-gi
    gir1.2-gstreamer-1.0
    gir1.2-gst-plugins-base-1.0
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-rtsp
    gstreamer1.0-tools
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly
    gstreamer1.0-libav
)

missing=()
for pkg in "${packages[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if (( ${#missing[@]} == 0 )); then
    echo "install-test-deps: all ${#packages[@]} packages present"
    exit 0
fi

sudo=()
if (( EUID != 0 )); then
    command -v sudo >/dev/null || { echo "install-test-deps: need root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "install-test-deps: installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
