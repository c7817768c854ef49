#!/usr/bin/env bash
# Build the real Kubernetes control plane the test suite runs against (tests/k8s/): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kwok, compiled from the Go
# module proxy as Go modules at the versions in scripts/controlplane-versions.env.
#
#   scripts/build-controlplane.sh                  build what is missing, then print the bin dir
#   scripts/build-controlplane.sh --print-bin-dir  print the bin dir only (builds nothing)
#
# Binaries are cached under ~/.cache/gpuctl-dev/controlplane-<versions>/bin, so a run with
# everything cached returns at once; bumping a version builds into a fresh directory.
# Progress goes to stderr; the bin dir is the only thing written to stdout.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) must stop the build too

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=controlplane-versions.env
source "$here/controlplane-versions.env"

cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-dev
bin_dir=$cache_root/controlplane-${K8S_VERSION#v}-etcd${ETCD_VERSION#v}-kwok${KWOK_VERSION#v}/bin
BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler)

say() { echo "build-controlplane: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# Name the step that failed, once: -E makes the trap fire in functions and $(...) too, but
# only the outermost shell reports.
set -E
trap 'status=$?; [[ $BASH_SUBSHELL -eq 0 ]] && say "FAILED (exit $status) at line $LINENO: $BASH_COMMAND"' ERR

case "${1:-}" in
  --print-bin-dir) echo "$bin_dir"; exit 0 ;;
  "") ;;
  *) echo "usage: $0 [--print-bin-dir]" >&2; exit 2 ;;
esac

missing_binaries() {
  local name
  for name in "${BINARIES[@]}"; do
    [[ -x "$bin_dir/$name" ]] || echo "$name"
  done
}

# The fast path: no go invocation at all when everything is cached.
if [[ -z "$(missing_binaries)" ]]; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || die "go is not installed (needs Go >= 1.26)"
command -v python3 >/dev/null || die "python3 is needed to read go.mod files"
mkdir -p "$bin_dir"

# Two pytest sessions or CI steps may start a cold build at once; the second waits for the
# first and then finds the binaries it built.
exec 9>"$bin_dir/../.build.lock"
flock 9
mapfile -t missing < <(missing_binaries)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$bin_dir"
  exit 0
fi
say "building ${missing[*]} into $bin_dir"

work=$(mktemp -d "${TMPDIR:-/tmp}/gpuctl-controlplane-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Build into $work/out and move each binary into place only when it is complete, so an
# interrupted build never leaves a half-written file that looks cached.
mkdir -p "$work/out"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
LEAN_LDFLAGS="-s -w"
started=$SECONDS

needs() {
  local name
  for name in "${missing[@]}"; do [[ "$name" == "$1" ]] && return 0; done
  return 1
}

install_binary() {
  mv -f "$work/out/$1" "$bin_dir/$1"
  say "  $1 ready ($(du -h "$bin_dir/$1" | cut -f1), $((SECONDS - started))s so far)"
}

# Path of a module version's go.mod in the module cache (downloads the module).
module_gomod() {
  go mod download -json "$1" | python3 -c 'import json, sys
info = json.load(sys.stdin)
if info.get("Error"):
    sys.exit(info["Error"])
print(info["GoMod"])'
}

# `-replace` flags that pin each required module which the upstream go.mod replaces with a
# local directory (k8s staging repos, etcd's sibling modules) to its published version.
# Those local paths only exist in the upstream git checkout, not in the module zip, which is
# why `go install module@version` refuses such modules.
pinned_replaces() {
  local gomod=$1 version=$2
  go mod edit -json "$gomod" | python3 -c 'import json, sys
mod, version = json.load(sys.stdin), sys.argv[1]
required = {r["Path"] for r in mod.get("Require") or []}
for rep in mod.get("Replace") or []:
    old, new = rep["Old"]["Path"], rep["New"]["Path"]
    local = new.startswith(("./", "../"))
    # etcd guards against bad imports with `=> ./FORBIDDEN_DEPENDENCY`; those are never required.
    if local and old in required:
        print(f"-replace={old}={old}@{version}")' "$version"
}

# A throwaway main module that requires $1@$2 and pins its local replaces to $3.
wrapper_module() {
  local dir=$work/$4 gomod replaces
  mkdir -p "$dir"
  gomod=$(module_gomod "$1@$2")
  mapfile -t replaces < <(pinned_replaces "$gomod" "$3")
  [[ ${#replaces[@]} -gt 0 ]] || die "found no local replaces to pin in $gomod"
  (cd "$dir" && go mod init "gpuctl.test/$4" 2>/dev/null && go mod edit "-require=$1@$2" "${replaces[@]}")
  echo "$dir"
}

build_kwok() {
  say "[kwok] go install sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok's go.mod has no local replaces, so the plain module install works.
  GOBIN="$work/out" go install -trimpath -ldflags="$LEAN_LDFLAGS" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  install_binary kwok
}

build_etcd() {
  local dir
  say "[etcd] wrapper module for go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  dir=$(wrapper_module go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION" etcd)
  say "[etcd] go build (the server module's root package is the etcd command)"
  (cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath -ldflags="$LEAN_LDFLAGS" \
     -o "$work/out/etcd" go.etcd.io/etcd/server/v3)
  install_binary etcd
}

build_kubernetes() {
  local dir staging_version=v0.${K8S_VERSION#v1.} minor name packages=()
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  for name in "${K8S_COMMANDS[@]}"; do
    needs "$name" && packages+=("k8s.io/kubernetes/cmd/$name")
  done
  [[ ${#packages[@]} -gt 0 ]] || return 0
  say "[kubernetes] wrapper module for k8s.io/kubernetes@$K8S_VERSION (staging modules at $staging_version)"
  dir=$(wrapper_module k8s.io/kubernetes "$K8S_VERSION" "$staging_version" kubernetes)
  say "[kubernetes] go build ${packages[*]##*/} (the longest step: about 7 min cold on 2 cores)"
  # The version stamp is what `kubectl version` and the /version endpoint report.
  local stamp="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  stamp+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  stamp+=" -X k8s.io/component-base/version.gitTreeState=clean"
  # One go build for all commands compiles their shared packages once.
  (cd "$dir" && GOFLAGS="$GOFLAGS -mod=mod" go build -trimpath \
     -ldflags="$LEAN_LDFLAGS $stamp" -o "$work/out/" "${packages[@]}")
  for name in "${K8S_COMMANDS[@]}"; do
    needs "$name" && install_binary "$name"
  done
}

needs kwok && build_kwok
needs etcd && build_etcd
build_kubernetes

[[ -z "$(missing_binaries)" ]] || die "still missing after the build: $(missing_binaries | xargs)"
say "done in $((SECONDS - started))s"
echo "$bin_dir"
