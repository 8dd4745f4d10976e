#!/usr/bin/env bash
# Installs the command-line tools the pipeline calls: ffmpeg/ffprobe, fpcalc (Chromaprint),
# fluidsynth and a General MIDI soundfont (demo music), espeak-ng and DejaVu fonts (demo
# voice-overs and text overlays), Chromium (c98k browse's headless-browser test). Uses Debian's packages when apt-get
# can be used; otherwise says what is missing. Idempotent and quiet when all is present.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || need+=(ffmpeg)
command -v fpcalc >/dev/null 2>&1 || need+=(libchromaprint-tools)
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
[ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)  # demo voice-overs
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need+=(fonts-dejavu-core)  # demo text overlays
[ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || need+=(fonts-wqy-microhei)  # Chinese tags in c98k stats plots
command -v chromium >/dev/null 2>&1 || need+=(chromium)  # tests/test_browse_chromium.py (Playwright drives it)
[ ${#need[@]} -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
  echo "installing Debian packages with sudo: ${need[*]}"
  sudo apt-get update -qq
  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "warning: cannot install ${need[*]} (no apt-get/root)." >&2
  echo "  ffmpeg: the pipeline falls back to the binary in the imageio-ffmpeg wheel and probes with PyAV (both in requirements.lock)." >&2
  echo "  fpcalc: install Chromaprint's fpcalc for music identity; fluidsynth is only needed by the demo." >&2
fi
