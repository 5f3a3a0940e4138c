# Shared by the scripts that find, start or install what the tests need (sourced, not run).

# Root runs commands directly; other users go through sudo when it works without a password.
SUDO=""
can_admin() {
  if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=""
    return 0
  fi
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
    return 0
  fi
  return 1
}

# find_exe NAME: path of an executable NAME on PATH, in /usr/bin or in /usr/sbin.
find_exe() {
  local p
  for p in "$(type -P "$1" 2>/dev/null || true)" "/usr/bin/$1" "/usr/sbin/$1"; do
    if [[ -n "$p" && -f "$p" && -x "$p" ]]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# parse_flags "$@": the flags every script takes: --dry-run (sets DRY_RUN=1) and -h/--help (prints
# the script's header comment); anything else is an error prefixed with $NAME.
# Usage: NAME=chromium; parse_flags "$@"
DRY_RUN=0
parse_flags() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      --dry-run) DRY_RUN=1 ;;
      -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        exit 0
        ;;
      *)
        echo "$NAME: unknown argument: $arg (try --help)" >&2
        exit 2
        ;;
    esac
  done
}

# apt_lists_fresh: true when apt has package lists younger than a day.
apt_lists_fresh() {
  local lists=/var/lib/apt/lists
  [[ -d "$lists" ]] || return 1
  [[ -n "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]]
}

# apt_install_package PKG: installs Debian's PKG without recommends (apt-get update first when the
# lists are missing or stale; after a failed install, update and retry once). Returns apt-get's
# exit status; with DRY_RUN=1 only says what it would run. Needs can_admin first (SUDO).
apt_install_package() {
  local pkg="$1"
  local update="${SUDO:+$SUDO }apt-get update"
  local install="${SUDO:+$SUDO }env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkg"
  if [[ "$DRY_RUN" -eq 1 ]]; then
    apt_lists_fresh || say "dry run: would run: $update"
    say "dry run: would run: $install"
    return 0
  fi
  local rc=0 start=$SECONDS
  if ! apt_lists_fresh; then
    say "apt package lists are missing or older than a day: $update"
    $SUDO apt-get -o DPkg::Lock::Timeout=120 update </dev/null >&2 || rc=$?
    if [[ $rc -ne 0 ]]; then
      say "apt-get update failed (exit $rc); trying the install anyway"
      rc=0
    fi
  fi
  apt_get_install "$pkg" || rc=$?
  if [[ $rc -ne 0 ]]; then
    say "apt-get install $pkg failed (exit $rc)"
    # A failed update can make the install fail on stale lists: update and retry once.
    rc=0
    $SUDO apt-get -o DPkg::Lock::Timeout=120 update </dev/null >&2 || true
    apt_get_install "$pkg" || rc=$?
    [[ $rc -eq 0 ]] || say "apt-get install $pkg failed again (exit $rc)"
  fi
  say "installed in $((SECONDS - start))s"
  return $rc
}

apt_get_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "$1" </dev/null >&2
}
