#!/usr/bin/env bash
# Make sure Prometheus's `prometheus` and `promtool` are available (for the dashboard and alert
# rule tests in test/integration/dashboards.test.ts, and for anyone who wants to scrape the demo).
#
#   both on PATH (or in /usr/bin, /usr/sbin)  -> print where they are; nothing is installed.
#   missing, root (or password-less sudo) and apt-get available
#                                             -> install Debian's `prometheus` package
#                                                (apt-get update first when its lists are
#                                                missing or stale; non-interactive; no recommends)
#   otherwise                                 -> exit 1 and say how to get them.
#
# Debian's package ships a `prometheus` service. This script never starts it and never relies on
# it: if the package's install script started it, it is stopped again, so that nothing is left
# listening on 127.0.0.1:9090 (tests start their own Prometheus on a free port).
#
# Options:
#   --dry-run   print what would be done instead of installing anything
#   -h, --help  show this help
#
# Output: the two paths on stdout, one per line ("prometheus=/usr/bin/prometheus",
# "promtool=/usr/bin/promtool"); every other message goes to stderr and starts with "prometheus:".
# Exit status 0 when both tools are available.
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
      echo "prometheus: unknown argument: $arg (try --help)" >&2
      exit 2
      ;;
  esac
done

say() { echo "prometheus: $*" >&2; }
# can_admin, find_exe
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

found() {
  local prom tool
  prom="$(find_exe prometheus)" || return 1
  tool="$(find_exe promtool)" || return 1
  echo "prometheus=$prom"
  echo "promtool=$tool"
}

explain_and_fail() {
  say "prometheus and promtool are not available: $1"
  say "do one of:"
  say "  - Debian/Ubuntu: sudo apt-get install --no-install-recommends prometheus"
  say "    (then sudo service prometheus stop, if you do not want its service running)"
  say "  - download a release from the Prometheus project and put its prometheus and promtool"
  say "    binaries on PATH"
  say "then run this script again (npm run prometheus)"
  exit 1
}

# apt_lists_fresh: true when apt has package lists younger than a day.
apt_lists_fresh() {
  local lists=/var/lib/apt/lists
  [[ -d "$lists" ]] || return 1
  [[ -n "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 -print -quit 2>/dev/null)" ]]
}

# stop_service: stop the service the package's install script may have started.
stop_service() {
  local stopped=0
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    if $SUDO systemctl is-active --quiet prometheus 2>/dev/null; then
      say "stopping the prometheus service the package started (systemctl stop prometheus)"
      $SUDO systemctl stop prometheus >&2 || true
      stopped=1
    fi
  fi
  if [[ $stopped -eq 0 && -x /etc/init.d/prometheus ]]; then
    if $SUDO /etc/init.d/prometheus status >/dev/null 2>&1; then
      say "stopping the prometheus service the package started (/etc/init.d/prometheus stop)"
      $SUDO /etc/init.d/prometheus stop </dev/null >&2 || true
    fi
  fi
}

install_prometheus() {
  local update="${SUDO:+$SUDO }apt-get update"
  local install="${SUDO:+$SUDO }env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus"
  say "prometheus/promtool not found; installing Debian's prometheus package with apt-get"
  if [[ "$DRY_RUN" -eq 1 ]]; then
    apt_lists_fresh || say "dry run: would run: $update"
    say "dry run: would run: $install"
    say "dry run: then stop the prometheus service if the package started it"
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
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    prometheus </dev/null >&2 || rc=$?
  if [[ $rc -ne 0 ]]; then
    say "apt-get install prometheus failed (exit $rc)"
    # A failed update can make the install fail on stale lists: update and retry once.
    rc=0
    $SUDO apt-get -o DPkg::Lock::Timeout=120 update </dev/null >&2 || true
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
      prometheus </dev/null >&2 || rc=$?
  fi
  # The package is unpacked even when its service failed to start from the install script.
  stop_service
  if [[ $rc -ne 0 ]]; then
    say "apt-get install prometheus failed again (exit $rc)"
  fi
  say "installed in $((SECONDS - start))s"
}

if found; then
  exit 0
fi

if find_exe apt-get >/dev/null; then
  can_admin || explain_and_fail "installing Debian's prometheus package needs root (or password-less sudo)"
  install_prometheus
  if [[ "$DRY_RUN" -eq 1 ]]; then
    echo "prometheus=/usr/bin/prometheus"
    echo "promtool=/usr/bin/promtool"
    exit 0
  fi
  found || explain_and_fail "apt-get install finished but prometheus or promtool was not found"
  exit 0
fi

explain_and_fail "they are not installed and apt-get is not available"
