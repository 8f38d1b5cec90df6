#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests: installs the server from Debian's packages when no
# server binary is found, creates a cluster in $LOTTERY_PG_DIR owned by a non-root user,
# starts it on 127.0.0.1:$LOTTERY_PG_PORT (fsync on: the same durability as production) and
# prints the one line the tests read:
#
#   eval "$(.ci/postgres.sh)"      # export LOTTERY_TEST_DATABASE_URL=postgresql://...
#
# Idempotent: a second run finds the cluster (running or not) and reuses it. Progress goes
# to stderr, only the export line to stdout. `.ci/postgres.sh stop` stops the cluster.
set -euo pipefail

PORT="${LOTTERY_PG_PORT:-54329}"
DIR="${LOTTERY_PG_DIR:-/tmp/lottery-pg-$PORT}"
DB_USER=lottery
DB_NAME=lottery
URL="postgresql://$DB_USER@127.0.0.1:$PORT/$DB_NAME"

say() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local dir
    # Debian's layout: /usr/lib/postgresql/<major>/bin; the highest major wins.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
    done
    if command -v postgres >/dev/null && command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$(command -v postgres)")"
        return
    fi
    return 1
}

BIN="$(find_bindir || true)"
if [ -z "$BIN" ]; then
    if [ "$(id -u)" != 0 ]; then
        say "no PostgreSQL server found and not root: install the 'postgresql' package first"
        exit 1
    fi
    say "installing PostgreSQL from the distribution's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN="$(find_bindir)"
fi

# PostgreSQL refuses to run as root: as root, run it as the 'postgres' system user (which
# the package creates; created here if missing), otherwise as ourselves.
if [ "$(id -u)" = 0 ]; then
    RUN_AS=postgres
    if ! id "$RUN_AS" >/dev/null 2>&1; then
        useradd --system --home-dir "$DIR" --shell /bin/bash "$RUN_AS"
    fi
    as_pg() { (cd / && runuser -u "$RUN_AS" -- "$@"); }
else
    RUN_AS="$(id -un)"
    as_pg() { (cd / && "$@"); }
fi

if [ "${1:-}" = stop ]; then
    if [ -f "$DIR/data/PG_VERSION" ]; then
        as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >&2 || true
    fi
    exit 0
fi

mkdir -p "$DIR"
chown "$RUN_AS" "$DIR"
chmod 700 "$DIR"

if [ ! -f "$DIR/data/PG_VERSION" ]; then
    say "creating a cluster in $DIR/data ($("$BIN/postgres" --version))"
    rm -rf "$DIR/data"
    # Loopback only and trust: a test database that holds nothing worth a password.
    as_pg "$BIN/initdb" -D "$DIR/data" -U "$DB_USER" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null 2>&1 \
        || as_pg "$BIN/initdb" -D "$DIR/data" -U "$DB_USER" --auth=trust -E UTF8 --locale=C >&2
    cat >>"$DIR/data/postgresql.conf" <<EOF
# lottery test cluster (.ci/postgres.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 200
fsync = on
synchronous_commit = on
logging_collector = off
EOF
fi

if ! as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1; then
    say "starting PostgreSQL on 127.0.0.1:$PORT"
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 start >&2 \
        || { tail -n 20 "$DIR/server.log" >&2; exit 1; }
fi

for _ in $(seq 1 100); do
    "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.1
done
"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" || { say "PostgreSQL did not become ready"; exit 1; }

if [ "$("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres -Atc \
        "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres -qc "CREATE DATABASE $DB_NAME" >&2
fi

say "ready: $URL"
echo "export LOTTERY_TEST_DATABASE_URL=$URL"
