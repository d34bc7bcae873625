#!/usr/bin/env bash
# Install the Debian packages the real-parts tests use: ffmpeg, nginx with the
# RTMP module, Debian's Chromium (Playwright drives it; it never downloads one),
# and GStreamer with its RTSP server and Python bindings for the system python
# (tests/fixtures/rtsp_camera.py); Node.js's npm when there is none, for the npm packages
# the browser tests load into pages (tests/js: hls.js, mpegts.js), installed from their lock file with
# `npm ci`.  Idempotent, and quick when all is there: apt-get and npm are not run at all
# then.  Needs root (as in CI) or sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

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
# A Node.js that brings its own npm (as NodeSource's does) is kept; else Debian's two packages.
command -v npm >/dev/null || packages+=(nodejs npm)

missing=()
for pkg in "${packages[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if (( ${#missing[@]} == 0 )); then
    echo "install-test-deps: all ${#packages[@]} packages present"
else
    sudo=()
    if (( EUID != 0 )); then
        command -v sudo >/dev/null || { echo "install-test-deps: need root to install: ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "install-test-deps: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm ci when the installed packages are not the versions the lock file pins (npm keeps
# what it installed in node_modules/.package-lock.json).
if ! python3 - <<'EOF'
import json, sys
pinned = json.load(open("tests/js/package-lock.json"))["packages"]
try:
    have = json.load(open("tests/js/node_modules/.package-lock.json"))["packages"]
except OSError:
    sys.exit(1)
sys.exit(any(have.get(name, {}).get("version") != p["version"] for name, p in pinned.items() if name))
EOF
then
    echo "install-test-deps: npm ci in tests/js"
    (cd tests/js && npm ci --ignore-scripts --no-audit --no-fund)
else
    echo "install-test-deps: tests/js npm packages present"
fi
