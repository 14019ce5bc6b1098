#!/usr/bin/env bash
# tools/indexed-engine.sh build | start DIR | stop DIR
#
# The engine with real indexes (DocumentDB + FerretDB v2) that ../shared/engines/documentdb/
# builds: the query-shape test explains the server's queries on it, and the whole suite can run
# on it (MONGODB_URL=... ./dev.sh test). `build` is idempotent (a few seconds once built);
# `start DIR` prints MONGODB_URL=... (the cluster lets an index serve a sort, as MongoDB does);
# `stop DIR` stops it.
#
# Why a wrapper: build.sh pins PostgreSQL 15 to the installed version but installs the newest
# postgresql-15-rum, which may require a newer PostgreSQL than the machine has; the apt step
# then fails. Installing first the rum build that fits the installed server avoids it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENGINE=${DMP_FHIR_DOCUMENTDB_DIR:-$ROOT/../shared/engines/documentdb}

die() {
    echo "indexed-engine.sh: $*" >&2
    exit 1
}

[[ -x $ENGINE/build.sh ]] || die "no $ENGINE/build.sh (set DMP_FHIR_DOCUMENTDB_DIR)"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

fit_rum() {
    installed postgresql-15-rum && return 0
    installed postgresql-15 || return 0 # build.sh installs PostgreSQL itself then
    ((EUID == 0)) || return 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
    local pg version
    pg=$(dpkg-query -W -f='${Version}' postgresql-15)
    for version in $(apt-cache madison postgresql-15-rum | awk -F'|' '{gsub(/ /, "", $2); print $2}'); do
        if apt-get install -s -qq "postgresql-15=$pg" "postgresql-15-rum=$version" >/dev/null 2>&1; then
            echo "indexed-engine.sh: installing postgresql-15-rum $version (fits PostgreSQL $pg)" >&2
            apt-get -o DPkg::Lock::Timeout=300 install -y -qq "postgresql-15=$pg" \
                "postgresql-15-rum=$version" >&2
            return 0
        fi
    done
}

case "${1:-}" in
    build)
        fit_rum
        "$ENGINE/build.sh" >&2
        ;;
    start)
        [[ $# -eq 2 ]] || die "usage: start DIR"
        "$ENGINE/start.sh" "$2"
        # Let an index serve a sort, as MongoDB does (DocumentDB leaves it off by default).
        pg_url=$(sed -n 's/^POSTGRES_URL=//p' "$2/env")
        psql "$pg_url" -X -q -v ON_ERROR_STOP=1 -c "ALTER SYSTEM SET documentdb.enableIndexOrderbyPushdown = on" \
            -c "SELECT pg_reload_conf()" >/dev/null
        ;;
    stop)
        [[ $# -eq 2 ]] || die "usage: stop DIR"
        "$ENGINE/stop.sh" "$2"
        ;;
    *)
        die "usage: build | start DIR | stop DIR"
        ;;
esac
