#!/usr/bin/env bash
# Make sure Debian's Chromium is available (for the status page test in
# test/integration/status-page.test.ts, which drives it headless through playwright-core).
#
#   /usr/bin/chromium present                 -> print where it is; nothing is installed.
#   missing, root (or password-less sudo) and apt-get available
#                                             -> install Debian's `chromium` package
#                                                (apt-get update first when its lists are
#                                                missing or stale; non-interactive; no recommends)
#   otherwise                                 -> exit 1 and say how to get it.
#
# Nothing is downloaded by npm: playwright-core ships no browser, and the test launches this one.
#
# Options:
#   --dry-run   print what would be done instead of installing anything
#   -h, --help  show this help
#
# Output: the path on stdout ("chromium=/usr/bin/chromium"); every other message goes to stderr
# and starts with "chromium:". Exit status 0 when the browser is available.
set -euo pipefail

DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
      exit 0
      ;;
    *)
      echo "chromium: unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

say() { echo "chromium: $*" >&2; }
# can_admin, find_exe
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

EXE=/usr/bin/chromium

found() {
  [[ -f "$EXE" && -x "$EXE" ]] || return 1
  echo "chromium=$EXE"
}

explain_and_fail() {
  say "chromium is not available: $1"
  say "do one of:"
  say "  - Debian/Ubuntu: sudo apt-get install --no-install-recommends chromium"
  say "  - run the status page test on a machine that has /usr/bin/chromium"
  say "    (the test is skipped, with this reason, when it is missing)"
  say "then run this script again (npm run chromium)"
  exit 1
}

# apt_lists_fresh: true when apt has package lists younger than a day.
apt_lists_fresh() {
  local lists=/var/lib/apt/lists
  [[ -d "$lists" ]] || return 1
  [[ -n "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]]
}

apt_install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    chromium </dev/null >&2
}

install_chromium() {
  local update="${SUDO:+$SUDO }apt-get update"
  local install="${SUDO:+$SUDO }env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium"
  say "$EXE not found; installing Debian's chromium package with apt-get"
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
  apt_install || rc=$?
  if [[ $rc -ne 0 ]]; then
    say "apt-get install chromium failed (exit $rc)"
    # A failed update can make the install fail on stale lists: update and retry once.
    rc=0
    $SUDO apt-get -o DPkg::Lock::Timeout=120 update </dev/null >&2 || true
    apt_install || rc=$?
  fi
  if [[ $rc -ne 0 ]]; then
    say "apt-get install chromium failed again (exit $rc)"
  fi
  say "installed in $((SECONDS - start))s"
}

if found; then
  exit 0
fi

if find_exe apt-get >/dev/null; then
  can_admin || explain_and_fail "installing Debian's chromium package needs root (or password-less sudo)"
  install_chromium
  if [[ "$DRY_RUN" -eq 1 ]]; then
    echo "chromium=$EXE"
    exit 0
  fi
  found || explain_and_fail "apt-get install finished but $EXE was not found"
  exit 0
fi

explain_and_fail "it is not installed and apt-get is not available"
