#!/usr/bin/env bash
# Build the real Pulumi CLI that the lifecycle tests drive, from the Go module proxy.
#
#   scripts/build-pulumi.sh                  build it when missing, then print its bin dir
#   scripts/build-pulumi.sh --print-bin-dir  print the bin dir only (builds nothing)
#
# `go install github.com/pulumi/pulumi/pkg/v3/cmd/pulumi@vX` is refused because pkg/v3's go.mod
# carries `replace` directives, so the CLI is built inside a throwaway wrapper module that
# requires pkg/v3 at the pinned version and repeats the one replace that points at a published
# fork. The version is stamped with -ldflags, as Pulumi's own release build does, so the
# Automation API's version check passes. Nothing is ever downloaded from a release page.
# Cached under ~/.cache/gpuctl-dev/pulumi-<version>/bin; progress goes to stderr.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=pulumi-version.env
source "$here/pulumi-version.env"

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-dev
bin_dir=$cache_root/pulumi-${PULUMI_CLI_VERSION#v}/bin

say() { echo "build-pulumi: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

case "${1:-}" in
  --print-bin-dir) echo "$bin_dir"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin-dir]" >&2; exit 2 ;;
esac

if [[ -x "$bin_dir/pulumi" ]]; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needs Go >= 1.26)"
mkdir -p "$bin_dir"
exec 9>"$bin_dir/../.build.lock"
flock 9   # a second concurrent build waits, then finds the binary
if [[ -x "$bin_dir/pulumi" ]]; then
  echo "$bin_dir"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/gpuctl-pulumi-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS
say "building pulumi $PULUMI_CLI_VERSION into $bin_dir (about 7 min cold on 2 cores)"

cat >"$work/tools.go" <<GO
//go:build tools

// The wrapper module's only job is to pin pkg/v3 so the pulumi command can be built from it.
package tools

import _ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
GO
(
  cd "$work"
  go mod init gpuctl.test/pulumi-cli >/dev/null 2>&1
  go mod edit "-require=github.com/pulumi/pulumi/pkg/v3@$PULUMI_CLI_VERSION" \
              "-replace=$PULUMI_CLIPBOARD_REPLACE"
  say "go mod tidy ($((SECONDS - started))s)"
  GOFLAGS=-tags=tools go mod tidy >&2
  say "go build ($((SECONDS - started))s)"
  CGO_ENABLED=0 go build -trimpath -buildvcs=false \
    -ldflags="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_CLI_VERSION" \
    -o "$work/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
)
"$work/pulumi" version >/dev/null || die "the built pulumi does not run"
mv -f "$work/pulumi" "$bin_dir/pulumi"   # moved into place only when complete
say "done in $((SECONDS - started))s: $("$bin_dir/pulumi" version)"
echo "$bin_dir"
