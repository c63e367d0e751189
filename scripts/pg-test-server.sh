#!/usr/bin/env bash
# A throwaway PostgreSQL for the test suite (trust auth, 127.0.0.1, fsync off).
#
#   eval "$(bash scripts/pg-test-server.sh start)"   # prints: export RECONCILE_TEST_PG_URL=...
#   bash scripts/pg-test-server.sh status
#   bash scripts/pg-test-server.sh stop              # stops it and deletes its data
#
# One server per checkout: its data lives in /tmp/reconcile-pg-<hash of this checkout>
# (override with RECONCILE_PG_DIR). The first free port from RECONCILE_PG_PORT (default
# 5433) is used. As root, the server runs as the `postgres` user (created if missing),
# because PostgreSQL refuses to run as root. Binaries: PG_BIN, else pg_config --bindir,
# else the newest /usr/lib/postgresql/*/bin. Only the export line goes to stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
key="$(printf '%s' "$here" | cksum | cut -d' ' -f1)"
base="${RECONCILE_PG_DIR:-${TMPDIR:-/tmp}/reconcile-pg-$key}"
first_port="${RECONCILE_PG_PORT:-5433}"

log() { printf 'pg-test-server: %s\n' "$*" >&2; }

find_bin() {
  if [[ -n "${PG_BIN:-}" ]]; then echo "$PG_BIN"; return; fi
  local d
  for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$d/initdb" ]]; then echo "$d"; return; fi
  done
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; then pg_config --bindir; return; fi
  log "no PostgreSQL server binaries found (set PG_BIN)"; exit 1
}

as_owner() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_owner() {
  [[ $EUID -eq 0 ]] || return 0
  id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

url_for() { echo "postgresql+psycopg://postgres@127.0.0.1:$1/postgres"; }

init_cluster() {
  local bin="$1"
  rm -rf "$base"
  mkdir -p "$base"
  chmod 700 "$base"
  [[ $EUID -eq 0 ]] && chown postgres: "$base"
  as_owner "$bin/initdb" -D "$base/data" -U postgres -A trust -E UTF8 --no-sync >"$base/initdb.log" 2>&1 \
    || { cat "$base/initdb.log" >&2; log "initdb failed"; exit 1; }
}

try_start() {
  local bin="$1" port="$2"
  local opts="-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$base"
  opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
  as_owner "$bin/pg_ctl" -D "$base/data" -o "$opts" -l "$base/server.log" -w -t 60 start >/dev/null 2>&1
}

start() {
  if [[ -f "$base/port" ]] && status >/dev/null 2>&1; then
    echo "export RECONCILE_TEST_PG_URL=$(url_for "$(cat "$base/port")")"; return
  fi
  local bin port tries=0
  bin="$(find_bin)"
  ensure_owner
  init_cluster "$bin"
  port="$first_port"
  while (( tries < 50 )); do
    if port_free "$port" && try_start "$bin" "$port"; then
      echo "$port" >"$base/port"
      log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $base"
      echo "export RECONCILE_TEST_PG_URL=$(url_for "$port")"
      return
    fi
    port=$((port + 1)); tries=$((tries + 1))
  done
  tail -n 20 "$base/server.log" >&2 || true
  log "could not start PostgreSQL on ports $first_port..$port"; exit 1
}

status() {
  [[ -d "$base/data" ]] || { log "not running (no data in $base)"; return 3; }
  as_owner "$(find_bin)/pg_ctl" -D "$base/data" status >&2
}

stop() {
  if [[ -d "$base/data" ]]; then
    as_owner "$(find_bin)/pg_ctl" -D "$base/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$base"
  log "stopped; removed $base"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
