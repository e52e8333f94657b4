#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the ledger tests: a fresh temporary directory, listening
# only on a Unix socket inside it (no TCP port, so it cannot clash with a system-wide cluster,
# which this script never touches), trust authentication for that socket.
#   dir=$(bash Deploy/test-postgres.sh start)     # prints the cluster directory
#   bash Deploy/test-postgres.sh url "$dir"        # prints postgres://postgres@localhost/postgres?host=$dir
#   bash Deploy/test-postgres.sh stop "$dir"       # stops the server and removes the directory
# As root (CI), initdb and the server run as the `postgres` system user, which Debian's
# postgresql package creates: PostgreSQL refuses to run as root.
set -euo pipefail

die() { echo "test-postgres: $*" >&2; exit 1; }

# The directory holding initdb and pg_ctl: pg_config's answer if it has them, else the newest
# /usr/lib/postgresql/*/bin (Debian keeps them off PATH).
find_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return; fi
    fi
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return; fi
    die "PostgreSQL server programs (initdb, pg_ctl) not found; run: bash Deploy/install-deps.sh --tests"
}

# Runs a command as the user that owns the cluster.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bindir dir
    bindir=$(find_bindir)
    if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
        die "no 'postgres' system user to run the server as; install Debian's postgresql package"
    fi
    # Always under /tmp: the postgres user must reach it (a root TMPDIR may be private) and a
    # socket path must stay under ~100 bytes.
    dir=$(mktemp -d /tmp/tributary-pg.XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
    if ! as_owner "$bindir/initdb" -D "$dir/data" --auth=trust --username=postgres --encoding=UTF8 --no-locale \
            --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        die "initdb failed"
    fi
    # fsync off: the cluster lives for one test run. TRIBUTARY_PG_DURABLE=1 keeps PostgreSQL's
    # durable defaults (for benchmarks that compare with SQLite's synchronous=FULL).
    # -w waits until it accepts connections.
    local sync="-c fsync=off -c full_page_writes=off"
    if [ "${TRIBUTARY_PG_DURABLE:-0}" = 1 ]; then sync=""; fi
    if ! as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses='' -k $dir $sync -c max_connections=200" \
            start >/dev/null; then
        cat "$dir/server.log" >&2 || true
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$dir"
        die "the server did not start"
    fi
    echo "$dir"
}

stop() {
    local dir=$1 bindir
    [ -n "$dir" ] || die "usage: $0 stop DIR"
    # Only ever a directory this script made: never a system cluster.
    case "$dir" in */tributary-pg.*) ;; *) die "refusing to stop '$dir': not a directory made by $0 start" ;; esac
    [ -d "$dir" ] || return 0
    bindir=$(find_bindir)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
            || as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) stop "${2:-}" ;;
    url) [ -n "${2:-}" ] || die "usage: $0 url DIR"; echo "postgres://postgres@localhost/postgres?host=$2" ;;
    *) die "usage: $0 start | url DIR | stop DIR" ;;
esac
