# Sourced by the install-*-deps.sh scripts: install the Debian packages that are not installed yet.
# Idempotent: when every package is already installed it does no network I/O.
#   apt_install_missing LABEL PACKAGE...
apt_install_missing() {
  local label=$1; shift
  local missing=() pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "$label: must run as root to apt-get install ${missing[*]}" >&2
    return 1
  fi
  echo "$label: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get update -qq
  DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
