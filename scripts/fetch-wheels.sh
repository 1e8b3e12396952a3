#!/usr/bin/env bash
# Put into the repository the Python wheels that image builds install, fetched
# here on the host (inside containers PyPI may be unreachable or its TLS not
# trusted, so no Dockerfile downloads anything from PyPI):
#   images/server/wheels/   the server's dependencies pinned in images/server/wheels.txt,
#                           binary wheels for the image's Python (CPython 3.11, Debian
#                           bookworm) on this machine's CPU;
#   images/rag/wheels/      the rag service's tokenizers library and embedding model
#                           (wordllama's data) pinned in images/rag/wheels.txt, for the
#                           same Python and CPU as the server's;
#   images/desktop/wheels/  pyautogui and friends pinned in images/desktop/wheels.txt,
#                           made exactly as `sandbox images build vm` makes them, through
#                           the same cache (~/.cache/sandbox/wheels/desktop).
# `docker compose build` (and `docker build .`) send the plain repository directory
# as the build context, so the wheels must be in it. Run this once before the first
# `docker compose up`; scripts/setup.sh runs it too. Idempotent, and offline once
# every pinned wheel is there. Each wheels/ directory keeps itself out of git.
set -euo pipefail
shopt -s nocaseglob  # wheel names differ in case from pins (PyYAML, pyyaml)
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

python=""
pip() {  # pip of the first Python that has it (looked for only when something is missing)
  local candidate
  if [ -z "$python" ]; then
    for candidate in "${PYTHON:-}" .venv/bin/python python3; do
      if [ -n "$candidate" ] && "$candidate" -m pip --version >/dev/null 2>&1; then
        python="$candidate"
        break
      fi
    done
  fi
  if [ -z "$python" ]; then
    echo "fetch-wheels: no Python with pip found: install python3-pip or run scripts/setup.sh" >&2
    exit 1
  fi
  "$python" -m pip "$@"
}

# The exact pins of a wheels.txt, one `name==version` a line.
pins_of() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$1" | grep -v '^$'
}

# Wheel file names spell the project name lower case with `_` (PEP 427).
wheel_glob() {
  local name="${1%%==*}" version="${1##*==}"
  name="$(printf '%s' "$name" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/_/g')"
  printf '%s-%s-*.whl' "$name" "$version"
}

find_wheel() {  # directory pin -> path of its wheel, or nothing
  local matches=("$1"/$(wheel_glob "$2"))
  [ -e "${matches[0]}" ] && printf '%s\n' "${matches[0]}"
  return 0
}

missing_pins() {  # directory wheels.txt -> pins without a wheel in directory
  local pin
  while read -r pin; do
    [ -n "$(find_wheel "$1" "$pin")" ] || echo "$pin"
  done < <(pins_of "$2")
}

# Keep exactly the pinned wheels in directory (stale versions would bloat contexts).
prune_unpinned() {
  local directory="$1" pins="$2" wheel pin
  local -A keep=()
  while read -r pin; do
    wheel="$(find_wheel "$directory" "$pin")"
    [ -z "$wheel" ] || keep["$wheel"]=1
  done < <(pins_of "$pins")
  for wheel in "$directory"/*.whl; do
    [ -e "$wheel" ] && [ -z "${keep[$wheel]:-}" ] && rm -f "$wheel"
  done
  return 0
}

ignore_in_git() {
  mkdir -p "$1"
  printf '# fetched by scripts/fetch-wheels.sh\n*\n' >"$1/.gitignore"
}

binary_wheels() {  # name: fetch images/<name>/wheels.txt's pins into images/<name>/wheels
  local name="$1" pins="images/$1/wheels.txt" dest="images/$1/wheels" arch
  ignore_in_git "$dest"
  mapfile -t missing < <(missing_pins "$dest" "$pins")
  if [ "${#missing[@]}" -gt 0 ]; then
    arch="$(uname -m)"
    log "$name wheels: fetching ${#missing[@]} for CPython 3.11 on $arch into $dest"
    pip download --quiet --disable-pip-version-check --no-deps \
      --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 \
      --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" \
      --platform "manylinux2014_$arch" --dest "$dest" "${missing[@]}"
  fi
  prune_unpinned "$dest" "$pins"
  mapfile -t missing < <(missing_pins "$dest" "$pins")
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "fetch-wheels: still missing in $dest: ${missing[*]}" >&2
    exit 1
  fi
  log "$name wheels: $(pins_of "$pins" | wc -l) pinned, all in $dest"
}

desktop_wheels() {
  local pins=images/desktop/wheels.txt dest=images/desktop/wheels pin wheel
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/sandbox/wheels/desktop"
  mkdir -p "$cache"
  ignore_in_git "$dest"
  mapfile -t missing < <(missing_pins "$cache" "$pins")
  if [ "${#missing[@]}" -gt 0 ]; then
    log "desktop wheels: building ${missing[*]} into $cache"
    # The command `sandbox images build vm` runs (sandbox/runtime/images.py).
    pip wheel --quiet --no-deps --disable-pip-version-check \
      --wheel-dir "$cache" "${missing[@]}"
  fi
  while read -r pin; do
    wheel="$(find_wheel "$cache" "$pin")"
    if [ -z "$wheel" ]; then
      echo "fetch-wheels: $pin is not in $cache" >&2
      exit 1
    fi
    cmp -s "$wheel" "$dest/$(basename "$wheel")" || cp "$wheel" "$dest/"
  done < <(pins_of "$pins")
  prune_unpinned "$dest" "$pins"
  log "desktop wheels: $(pins_of "$pins" | wc -l) pinned, all in $dest"
}

binary_wheels server
binary_wheels rag
desktop_wheels
