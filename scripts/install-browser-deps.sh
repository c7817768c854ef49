#!/usr/bin/env bash
# Install the headless browser the Web UI browser test (tests/test_webui_browser.py) drives:
# Debian's chromium and its matching chromedriver, plus the fonts it needs to draw text in the
# screenshot. Idempotent: when every package is already installed it does no network I/O.
set -euo pipefail

# chromium-driver is built from the same source as chromium, so their versions always match.
# fonts-dejavu-core: with --no-install-recommends chromium has no font, and text renders as boxes.
PACKAGES=(chromium chromium-driver fonts-dejavu-core)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-browser-deps: must run as root to apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "install-browser-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
