# Shared by scripts/test and scripts/demo: install what is missing, configure once, build
# incrementally. Source it from the repository root.

IDLEGRID_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IDLEGRID_BUILD=${IDLEGRID_BUILD:-$IDLEGRID_ROOT/build}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs the Debian packages listed in a file (default scripts/packages.txt) that are not
# installed yet. Quiet and quick when everything is there; uses sudo when not root.
install_packages() {
  local list=${1:-$IDLEGRID_ROOT/scripts/packages.txt} wanted missing=()
  wanted=$(grep -v '^\s*#' "$list" | grep -v '^\s*$')
  for pkg in $wanted; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; return 1; }
    sudo=(sudo)
  fi
  log "installing ${#missing[@]} Debian packages: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# Configures (first time only) and builds everything, incrementally.
build_all() {
  if [ ! -f "$IDLEGRID_BUILD/CMakeCache.txt" ]; then
    log "configuring $IDLEGRID_BUILD"
    cmake -S "$IDLEGRID_ROOT" -B "$IDLEGRID_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DIDLEGRID_WERROR=ON >/dev/null
  fi
  log "building (incremental)"
  cmake --build "$IDLEGRID_BUILD" -j "$(nproc)"
}
