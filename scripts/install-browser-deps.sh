#!/usr/bin/env bash
# Install the headless browser the Web UI browser test (tests/test_webui_browser.py) drives:
# Debian's chromium and its matching chromedriver, plus the fonts it needs to draw text in the
# screenshot. Idempotent: when every package is already installed it does no network I/O.
set -euo pipefail

# chromium-driver is built from the same source as chromium, so their versions always match.
# fonts-dejavu-core: with --no-install-recommends chromium has no font, and text renders as boxes.
PACKAGES=(chromium chromium-driver fonts-dejavu-core)

source "$(dirname "$0")/lib/apt-missing.sh"
apt_install_missing install-browser-deps "${PACKAGES[@]}"
