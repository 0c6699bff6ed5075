#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests and the benchmark.
#
#   tools/pg.sh start   initdb (if needed) + start on 127.0.0.1:${CALLSEC_PG_PORT:-55432},
#                       trust auth on loopback only, database callsec_test; prints the URL
#   tools/pg.sh url     prints postgresql+psycopg://postgres@127.0.0.1:PORT/callsec_test
#   tools/pg.sh stop    stops the cluster and deletes its data directory
#   tools/pg.sh status  exit 0 if it accepts connections
#
# Use: export CALLSEC_TEST_PG_URL="$(tools/pg.sh start)"
# Runs the server as the `postgres` user (via runuser/su when started as root). Installs the
# Debian `postgresql` package if no server binaries are found.
set -euo pipefail

PORT="${CALLSEC_PG_PORT:-55432}"
BASE="${CALLSEC_PG_DIR:-/tmp/callsec-pg-${PORT}}"
DATA="$BASE/data"
LOG="$BASE/server.log"
DB=callsec_test
# shellcheck source=tools/close-inherited-fds.sh
source "$(dirname "${BASH_SOURCE[0]}")/close-inherited-fds.sh"

find_bindir() {
    local dir
    for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    return 1
}

BIN="$(find_bindir || true)"
if [ -z "$BIN" ] && [ "${1:-}" = start ]; then
    echo "pg.sh: no PostgreSQL server binaries; installing the postgresql package" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    BIN="$(find_bindir)"
fi

as_pg() {
    if [ "$(id -u)" = 0 ]; then
        if command -v runuser >/dev/null; then runuser -u postgres -- "$@"
        else su postgres -s /bin/sh -c "$(printf '%q ' "$@")"; fi
    else
        "$@"
    fi
}

url() { echo "postgresql+psycopg://postgres@127.0.0.1:${PORT}/${DB}"; }

ready() { [ -n "$BIN" ] && "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres; }

start() {
    if ready; then url; return 0; fi
    mkdir -p "$BASE"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$BASE"; fi
    if [ ! -s "$DATA/PG_VERSION" ]; then
        as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
        # loopback only: no unix socket outside the data dir, TCP on 127.0.0.1
        cat > "$DATA/pg_hba.conf" <<'EOF'
local   all all                 trust
host    all all 127.0.0.1/32    trust
host    all all ::1/128         trust
EOF
        if [ "$(id -u)" = 0 ]; then chown postgres: "$DATA/pg_hba.conf"; fi
    fi
    (
        close_inherited_fds  # a PostgreSQL holding `flock`'s lock blocks every later `flock`
        as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $PORT -k $BASE -c fsync=off \
                -c synchronous_commit=off -c full_page_writes=off -c max_connections=100" \
            start >/dev/null
    )
    if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc \
            "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
        as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB"
    fi
    url
}

stop() {
    if [ -n "$BIN" ] && [ -s "$DATA/postmaster.pid" ]; then
        as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$BASE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) url ;;
    status) ready ;;
    *) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
