#!/usr/bin/env bash
# Build the Cloud Storage emulator (fake-gcs-server) that the checkpoint tests drive, from the Go
# module proxy.
#
#   scripts/build-gcs-emulator.sh              build it when missing, then print the binary's path
#   scripts/build-gcs-emulator.sh --print-path print the binary's path only (builds nothing)
#
# The module's go.mod carries no `replace` directives, so `go install module@version` builds it
# as published (GOFLAGS=-mod=mod so a go.work or vendor dir around the caller cannot interfere).
# Nothing is ever downloaded from a release page. Cached under
# ~/.cache/gpuctl-dev/fake-gcs-server-<version>/bin; progress goes to stderr.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=gcs-emulator-version.env
source "$here/gcs-emulator-version.env"

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-dev
bin_dir=$cache_root/fake-gcs-server-${GCS_EMULATOR_VERSION#v}/bin
binary=$bin_dir/fake-gcs-server

say() { echo "build-gcs-emulator: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

case "${1:-}" in
  --print-path) echo "$binary"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-path]" >&2; exit 2 ;;
esac

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needs Go >= 1.26, the module's go directive)"
mkdir -p "$bin_dir"
exec 9>"$bin_dir/../.build.lock"
flock 9   # a second concurrent build waits, then finds the binary
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gpuctl-gcs-emulator-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS
say "building $GCS_EMULATOR_MODULE@$GCS_EMULATOR_VERSION into $bin_dir (about 2 min cold on 2 cores: 104 s measured, 700 MB of modules)"

# GOBIN into the temp dir, then one move: a half-written binary is never left in the cache.
# Run from the temp dir so no go.mod/go.work of the caller's tree is consulted.
(
  cd "$work"
  GOBIN="$work" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install -trimpath -ldflags="-s -w" "$GCS_EMULATOR_MODULE@$GCS_EMULATOR_VERSION"
)
[[ -x "$work/fake-gcs-server" ]] || die "go install produced no fake-gcs-server binary"
"$work/fake-gcs-server" -help >/dev/null 2>&1 || die "the built fake-gcs-server does not run"
mv -f "$work/fake-gcs-server" "$binary"
say "done in $((SECONDS - started))s"
echo "$binary"
