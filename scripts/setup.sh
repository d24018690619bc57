#!/usr/bin/env bash
# Idempotent set-up of everything DenoiseCast needs on a Debian machine:
# system packages, a virtual environment in .venv and the package itself
# (editable, with its compiled extensions).  Safe to run again and again:
# it only does what is missing or out of date.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Debian packages.  The test suite also uses PostgreSQL and Redis servers and
# the audio tools; a server-only machine can set DENOISECAST_SERVER_ONLY=1.
# nginx: the reverse-proxy test runs Debian's nginx as a child process of its own.
# GStreamer's webrtcbin (plugins-bad, with libnice) driven from Debian's python3 (python3-gi and the
# typelibs): the second, independent WHIP client of tests/test_whip_twistd.py.
# ffmpeg: the HTTP listener tests play the Ogg/Opus stream with ffmpeg and ffprobe.
DEBS=(python3-venv postgresql redis-server espeak-ng sox libsox-fmt-all chromium nginx ffmpeg
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice
      python3-gi gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1)
if [ "${DENOISECAST_SERVER_ONLY:-0}" = 1 ]; then
    DEBS=(python3-venv)
fi
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in "${DEBS[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
fi
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    echo "setup: installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
# Quiet pip's notes about unused local package indexes some machines configure.
pip_() { "${PIP[@]}" "$@" 2>&1 | sed '/^WARNING: Location .* is ignored/d'; }

# Reinstall only when the package definition or the extension sources
# changed since the last run.
shopt -s nullglob
stamp=$(cat pyproject.toml setup.py scripts/setup.sh denoisecast/audio/*.pyx | sha256sum | cut -c1-16)
if [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$stamp" ]; then
    echo "setup: installing Python packages into .venv"
    pip_ install --upgrade pip setuptools wheel Cython
    # The CPU build of torch, pinned: an unpinned requirement pulls a
    # multi-gigabyte CUDA build.
    pip_ install "torch==2.13.0"
    pip_ install -e ".[test]"
    # twistd finds plugins through sys.path entries holding twisted/plugins/;
    # an editable install's import hooks hide the checkout's, a path entry
    # does not.
    site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$ROOT" > "$site/denoisecast-checkout.pth"
    echo "$stamp" > .venv/.setup-stamp
fi
