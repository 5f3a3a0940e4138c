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


say() { echo "chromium: $*" >&2; }
# can_admin, find_exe, parse_flags, apt_install_package
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NAME=chromium
parse_flags "$@"

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

install_chromium() {
  say "$EXE not found; installing Debian's chromium package with apt-get"
  apt_install_package chromium || true
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
