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


say() { echo "prometheus: $*" >&2; }
# can_admin, find_exe, parse_flags, apt_install_package
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NAME=prometheus
parse_flags "$@"

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
  say "prometheus/promtool not found; installing Debian's prometheus package with apt-get"
  if [[ "$DRY_RUN" -eq 1 ]]; then
    apt_install_package prometheus
    say "dry run: then stop the prometheus service if the package started it"
    return 0
  fi
  apt_install_package prometheus || true
  # The package is unpacked even when its service failed to start from the install script.
  stop_service
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
