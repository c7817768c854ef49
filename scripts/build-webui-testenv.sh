#!/usr/bin/env bash
# Build the environment of the Web UI browser test (tests/test_webui_browser.py): two venvs at
# the versions in scripts/webui-testenv-versions.env,
#   webui/  Open WebUI (slim: no local models, see the versions file) and selenium
#   llama/  llama-cpp-python[server] (compiles llama.cpp with cmake: the longest step) and gguf
#
#   scripts/build-webui-testenv.sh              build what is missing, then print the env dir
#   scripts/build-webui-testenv.sh --print-dir  print the env dir only (builds nothing)
#   scripts/build-webui-testenv.sh --write-constraints
#        after changing a version: build without the constraint files, then rewrite them from
#        what got installed (pip freeze), so every dependency of a dependency is pinned too
#
# Cached under ~/.cache/gpuctl-dev/webui-testenv-<hash of the versions and constraint files>/,
# so a run with everything built returns at once; changing a version builds into a fresh
# directory. A venv counts as built only once its .complete marker is written, at the end of
# its build, so an interrupted build is redone. Progress goes to stderr; stdout is the env dir.
# Needs python3 3.11 or 3.12 (Open WebUI's Requires-Python), a C++ compiler and cmake.
set -euo pipefail
shopt -s inherit_errexit

here=$(cd "$(dirname "$0")" && pwd)
versions=$here/webui-testenv-versions.env
# shellcheck source=webui-testenv-versions.env
source "$versions"
constraints_webui=$here/../tests/webui_browser/constraints-webui.txt
constraints_llama=$here/../tests/webui_browser/constraints-llama.txt

write_constraints=
case "${1:-}" in
  --write-constraints)  # build against empty constraints, in a directory of its own
    write_constraints=1
    constraints_webui=/dev/null constraints_llama=/dev/null ;;
esac
key=$(cat "$versions" "$constraints_webui" "$constraints_llama" | sha256sum | cut -c1-12)
cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/gpuctl-dev
env_dir=$cache_root/webui-testenv-$key

say() { echo "build-webui-testenv: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
set -E
trap 'status=$?; [[ $BASH_SUBSHELL -eq 0 ]] && say "FAILED (exit $status) at line $LINENO: $BASH_COMMAND"' ERR

case "${1:-}" in
  --print-dir) echo "$env_dir"; exit 0 ;;
  ""|--write-constraints) ;;
  *) echo "usage: $0 [--print-dir|--write-constraints]" >&2; exit 2 ;;
esac

complete() { [[ -f "$env_dir/$1/.complete" ]]; }
freeze() {  # freeze VENV PACKAGE-TO-LEAVE-OUT FILE
  { echo "# pip freeze of the $1 venv built by scripts/build-webui-testenv.sh --write-constraints:"
    echo "# the dependencies of dependencies pinned too, so a new release on PyPI does not change"
    echo "# what CI installs. Rewrite it with that command after changing a version."
    "$env_dir/$1/bin/pip" freeze --disable-pip-version-check | grep -v -i "^$2=="
  } >"$3"
  say "wrote $3"
}
write_constraint_files() {
  [[ -n $write_constraints ]] || return 0
  freeze webui open-webui "$here/../tests/webui_browser/constraints-webui.txt"
  freeze llama llama_cpp_python "$here/../tests/webui_browser/constraints-llama.txt"
}
if complete webui && complete llama; then
  write_constraint_files
  echo "$env_dir"
  exit 0
fi

python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' \
  || die "$python is $("$python" -V 2>&1); Open WebUI $OPEN_WEBUI_VERSION needs Python 3.11 or 3.12"

mkdir -p "$env_dir"
# Two sessions may start a cold build at once; the second waits and then finds it built.
exec 9>"$env_dir/.build.lock"
flock 9
started=$SECONDS

new_venv() {  # new_venv NAME: a fresh venv at $env_dir/NAME (whatever was there is removed)
  rm -rf "${env_dir:?}/$1"
  "$python" -m venv "$env_dir/$1"
  "$env_dir/$1/bin/pip" install -q --disable-pip-version-check --upgrade pip >&2
}

finish_venv() {  # finish_venv NAME: mark it complete
  touch "$env_dir/$1/.complete"
  say "  $1 ready ($(du -sh "$env_dir/$1" | cut -f1), $((SECONDS - started))s so far)"
}

build_webui() {
  local venv=$env_dir/webui
  say "[webui] open-webui==$OPEN_WEBUI_VERSION without: $OPEN_WEBUI_SKIP"
  new_venv webui
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "open-webui==$OPEN_WEBUI_VERSION" >&2
  # Every dependency the wheel pins, at its pin, minus the skipped ones.
  OPEN_WEBUI_SKIP=$OPEN_WEBUI_SKIP "$venv/bin/python" - >"$venv/requirements.txt" <<'PY'
import importlib.metadata as md, os, re
skip = set(os.environ["OPEN_WEBUI_SKIP"].split())
for req in md.requires("open-webui"):
    if "extra ==" in req:
        continue
    name = re.split(r"[\[=<>!~; ]", req, maxsplit=1)[0].lower()
    if name not in skip:
        print(req)
PY
  # pip warns that open-webui's skipped pins are not installed: expected, so not shown.
  # shellcheck disable=SC2086  # word splitting wanted: a list of requirements
  "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints_webui" \
    -r "$venv/requirements.txt" $OPEN_WEBUI_EXTRA "selenium==$SELENIUM_VERSION" >"$venv/pip-install.log" 2>&1 \
    || { tail -30 "$venv/pip-install.log" >&2; die "pip install failed (log: $venv/pip-install.log)"; }
  grep -v -e "^open-webui .* requires .*, which is not installed" \
          -e "dependency resolver does not currently" -e "dependency conflicts" \
          "$venv/pip-install.log" >&2 || true
  # The check that matters: the app imports in slim mode.
  FROM_INIT_PY=true USE_SLIM_DOCKER=true OFFLINE_MODE=true WEBUI_SECRET_KEY=build-check \
    DATA_DIR="$venv/check-data" "$venv/bin/python" -c 'import open_webui.main' >/dev/null 2>"$venv/import-check.log" \
    || { tail -20 "$venv/import-check.log" >&2; die "open_webui.main does not import in slim mode (see above)"; }
  rm -rf "$venv/check-data"
  finish_venv webui
}

build_llama() {
  local venv=$env_dir/llama
  say "[llama] llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION: compiling llama.cpp (about 5 min on 2 cores)"
  command -v cmake >/dev/null || die "cmake is not installed"
  command -v c++ >/dev/null || die "no C++ compiler (c++) is installed"
  new_venv llama
  # Only the library: no multimodal (mtmd) library, tests, examples or tools; generic CPU code
  # so a cached build runs on any x86-64 runner.
  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
    "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints_llama" \
      "llama-cpp-python[server]==$LLAMA_CPP_PYTHON_VERSION" "gguf==$GGUF_VERSION" >&2
  "$venv/bin/python" -c 'import llama_cpp.server, gguf' || die "llama_cpp.server does not import"
  finish_venv llama
}

complete webui || build_webui
complete llama || build_llama
say "done in $((SECONDS - started))s: $env_dir ($(du -sh "$env_dir" | cut -f1))"
write_constraint_files
echo "$env_dir"
