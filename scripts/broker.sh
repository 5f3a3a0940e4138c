#!/usr/bin/env bash
# Make sure an AMQP 0-9-1 broker answers before tests, examples or benchmarks run.
#
#   AMQP_URL set      -> check that its host:port accepts TCP connections; nothing is started.
#   AMQP_URL unset    -> use the local broker on 127.0.0.1:5672, starting it (and, as root with
#                        apt-get, installing Debian's rabbitmq-server first) when it is not running.
#
# Options:
#   --dry-run   print what would be done instead of installing or starting anything
#   -h, --help  show this help
# Environment:
#   AMQP_URL            amqp[s]://user:pass@host:port/vhost of a broker to use instead
#   BROKER_WAIT_SECS    how long to wait for a started broker (default 60)
#   BROKER_LOCAL_PORT   port probed for the local broker (default 5672)
#
# All messages go to stderr and start with "broker:". Exit status 0 when a broker answers.
set -euo pipefail


WAIT_SECS="${BROKER_WAIT_SECS:-60}"
LOCAL_HOST=127.0.0.1
LOCAL_PORT="${BROKER_LOCAL_PORT:-5672}"

say() { echo "broker: $*" >&2; }
# can_admin, find_exe, parse_flags, apt_install_package
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
NAME=broker
parse_flags "$@"

# tcp_open HOST PORT: true when a TCP connection to HOST:PORT succeeds within 3 s.
tcp_open() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# mask_url URL: the URL with any password replaced by "***".
mask_url() {
  local url="$1" scheme rest userinfo hostpart
  if [[ "$url" =~ ^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$ ]]; then
    scheme="${BASH_REMATCH[1]}"
    rest="${BASH_REMATCH[2]}"
  else
    scheme=""
    rest="$url"
  fi
  local authority="${rest%%/*}"
  local path="${rest:${#authority}}"
  if [[ "$authority" == *@* ]]; then
    userinfo="${authority%@*}"
    hostpart="${authority##*@}"
    if [[ "$userinfo" == *:* ]]; then
      userinfo="${userinfo%%:*}:***"
    fi
    echo "${scheme}${userinfo}@${hostpart}${path}"
  else
    echo "$url"
  fi
}

check_amqp_url() {
  local url="$AMQP_URL" masked scheme rest authority hostport host port
  masked="$(mask_url "$url")"
  if [[ ! "$url" =~ ^(amqps?)://(.*)$ ]]; then
    say "AMQP_URL=$masked is not an amqp:// or amqps:// URL"
    say "expected the form amqp://user:pass@host:port/vhost"
    exit 1
  fi
  scheme="${BASH_REMATCH[1]}"
  rest="${BASH_REMATCH[2]}"
  authority="${rest%%[/?#]*}"
  hostport="${authority##*@}"
  if [[ "$hostport" =~ ^\[([0-9A-Fa-f:.]+)\](:([0-9]+))?$ ]]; then
    host="${BASH_REMATCH[1]}"
    port="${BASH_REMATCH[3]}"
  elif [[ "$hostport" =~ ^([^:]*)(:([0-9]*))?$ ]]; then
    host="${BASH_REMATCH[1]}"
    port="${BASH_REMATCH[3]}"
  else
    say "cannot read host and port from AMQP_URL=$masked"
    exit 1
  fi
  [[ -n "$host" ]] || host=localhost
  if [[ -z "$port" ]]; then
    if [[ "$scheme" == amqps ]]; then port=5671; else port=5672; fi
  fi
  if tcp_open "$host" "$port"; then
    exit 0
  fi
  local shown="$host"
  [[ "$host" != *:* ]] || shown="[$host]"
  say "nothing answers on $shown:$port (from AMQP_URL=$masked)"
  say "start that broker, or unset AMQP_URL to use a local RabbitMQ on $LOCAL_HOST:5672"
  exit 1
}

find_server() { find_exe rabbitmq-server; }
find_ctl() { find_exe rabbitmqctl; }

explain_and_fail() {
  say "no AMQP broker answers on $LOCAL_HOST:$LOCAL_PORT and none could be started: $1"
  say "do one of:"
  say "  - install RabbitMQ (Debian/Ubuntu: sudo apt-get install rabbitmq-server) and start it"
  say "    (sudo rabbitmq-server -detached, or sudo systemctl start rabbitmq-server)"
  say "  - run a broker elsewhere (e.g. docker run -d -p 5672:5672 rabbitmq:3) and set"
  say "    AMQP_URL=amqp://user:pass@host:port/vhost"
  exit 1
}

start_server() {
  local server="$1"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    say "starting rabbitmq-server (systemctl start rabbitmq-server)"
    if [[ "$DRY_RUN" -eq 1 ]]; then
      say "dry run: would run: ${SUDO:+$SUDO }systemctl start rabbitmq-server"
      return 0
    fi
    if $SUDO systemctl start rabbitmq-server >&2; then
      return 0
    fi
    say "systemctl start failed; trying $server -detached"
  else
    say "starting rabbitmq-server ($server -detached)"
  fi
  if [[ "$DRY_RUN" -eq 1 ]]; then
    say "dry run: would run: ${SUDO:+$SUDO }$server -detached"
    return 0
  fi
  # The Debian wrapper switches to the rabbitmq user and detaches; keep our stdout clean.
  $SUDO "$server" -detached </dev/null >&2
}

wait_for_server() {
  local deadline=$((SECONDS + WAIT_SECS)) ctl remaining
  if [[ "$DRY_RUN" -eq 1 ]]; then
    say "dry run: would wait up to ${WAIT_SECS}s for $LOCAL_HOST:$LOCAL_PORT, then rabbitmqctl await_startup"
    return 0
  fi
  say "waiting up to ${WAIT_SECS}s for $LOCAL_HOST:$LOCAL_PORT"
  until tcp_open "$LOCAL_HOST" "$LOCAL_PORT"; do
    if ((SECONDS >= deadline)); then
      say "RabbitMQ did not open $LOCAL_HOST:$LOCAL_PORT within ${WAIT_SECS}s"
      say "look at /var/log/rabbitmq/ (startup_log, startup_err, rabbit@*.log)"
      exit 1
    fi
    sleep 1
  done
  if ctl="$(find_ctl)"; then
    remaining=$((deadline - SECONDS))
    ((remaining >= 5)) || remaining=5
    if ! timeout "$((remaining + 5))" $SUDO "$ctl" await_startup --timeout "$remaining" </dev/null >/dev/null 2>&1; then
      say "port $LOCAL_PORT is open but 'rabbitmqctl await_startup' did not succeed; continuing"
    fi
  fi
  say "RabbitMQ is up on $LOCAL_HOST:$LOCAL_PORT (after ${SECONDS}s)"
}

install_server() {
  say "rabbitmq-server is not installed; installing it with apt-get (this takes a minute or two)"
  if [[ "$DRY_RUN" -eq 1 ]]; then
    say "dry run: would run: ${SUDO:+$SUDO }apt-get update && ${SUDO:+$SUDO }env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server"
    return 0
  fi
  local rc=0
  $SUDO apt-get update </dev/null >&2 || rc=$?
  if [[ $rc -ne 0 ]]; then
    say "apt-get update failed (exit $rc); trying the install anyway"
    rc=0
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y rabbitmq-server </dev/null >&2 || rc=$?
  if [[ $rc -ne 0 ]]; then
    # The package may be unpacked but its service failed to start from the install script.
    say "apt-get install rabbitmq-server failed (exit $rc)"
    find_server >/dev/null || explain_and_fail "apt-get install rabbitmq-server failed"
  fi
}

if [[ -n "${AMQP_URL:-}" ]]; then
  check_amqp_url
fi

if tcp_open "$LOCAL_HOST" "$LOCAL_PORT"; then
  exit 0
fi

if server="$(find_server)"; then
  can_admin || explain_and_fail "rabbitmq-server is installed but starting it needs root (or password-less sudo)"
  start_server "$server"
  wait_for_server
  exit 0
fi

if find_exe apt-get >/dev/null; then
  can_admin || explain_and_fail "installing rabbitmq-server needs root (or password-less sudo)"
  install_server
  # The package's install script may already have started the service.
  if [[ "$DRY_RUN" -eq 0 ]] && tcp_open "$LOCAL_HOST" "$LOCAL_PORT"; then
    say "RabbitMQ is up on $LOCAL_HOST:$LOCAL_PORT"
    exit 0
  fi
  server="$(find_server)" || {
    if [[ "$DRY_RUN" -eq 1 ]]; then
      server=/usr/sbin/rabbitmq-server
    else
      explain_and_fail "apt-get install finished but rabbitmq-server was not found"
    fi
  }
  start_server "$server"
  wait_for_server
  exit 0
fi

explain_and_fail "rabbitmq-server is not installed and apt-get is not available"
