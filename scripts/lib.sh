# Shared by scripts/broker.sh and scripts/prometheus.sh (sourced, not run).

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
