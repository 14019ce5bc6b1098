#!/usr/bin/env bash
# Development entry point: ./dev.sh serve | ./dev.sh test
# Creates .venv, installs the project (again only when pyproject.toml changed) and builds FerretDB,
# the embedded MongoDB-compatible server used when MONGODB_URL is unset.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    cat <<'USAGE'
Usage:
  ./dev.sh serve [args]   run the FHIR server with the samples loaded (embedded database
                          unless MONGODB_URL is set); args go to `dmp-fhir serve`
  ./dev.sh test [args]    ruff, mypy, then pytest (args go to pytest)
USAGE
}

setup() {
    if [[ ! -x .venv/bin/python ]]; then
        echo "dev.sh: creating .venv" >&2
        python3 -m venv .venv
    fi
    local stamp
    stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [[ ! -e $stamp ]]; then
        echo "dev.sh: installing the project and its dev dependencies into .venv" >&2
        .venv/bin/python -m pip install --quiet -e '.[dev]'
        rm -f .venv/.installed-*
        touch "$stamp"
    fi
    if [[ -z ${MONGODB_URL:-} ]]; then
        .venv/bin/python -c 'import logging; logging.basicConfig(level=logging.INFO, format="dev.sh: %(message)s")
from dmp_fhir.devdb import ensure_ferretdb_binary; ensure_ferretdb_binary()'
    fi
}

ensure_chromium() {
    # The portal's browser tests (tests/test_portal_browser.py) drive Debian's Chromium through
    # Playwright (`playwright install` would download a browser: not possible here). They skip,
    # saying why, when it is missing and cannot be installed.
    if command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]]; then
        return
    fi
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "dev.sh: installing Debian's chromium for the portal's browser tests" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ||
            echo "dev.sh: could not install chromium; the browser tests will be skipped" >&2
    else
        echo "dev.sh: chromium is missing (apt-get install chromium); the browser tests will be skipped" >&2
    fi
}

run_tests() {
    local failed=()
    .venv/bin/ruff check src tests benchmarks || failed+=(ruff)
    .venv/bin/mypy || failed+=(mypy)
    local rc=0
    .venv/bin/pytest "$@" || rc=$?
    if ((rc == 5)); then
        echo "dev.sh: pytest collected no tests" >&2
    fi
    ((rc == 0)) || failed+=("pytest (exit $rc)")
    if ((${#failed[@]})); then
        echo "dev.sh: FAILED: ${failed[*]}" >&2
        exit 1
    fi
    echo "dev.sh: all checks passed" >&2
}

case "${1:-}" in
    serve)
        shift
        setup
        # Development mode: the server accepts tokens minted by `dmp-fhir token` (never in production).
        export DMP_FHIR_DEV_MODE="${DMP_FHIR_DEV_MODE:-true}"
        exec .venv/bin/dmp-fhir serve --load samples/ "$@"
        ;;
    test)
        shift
        setup
        ensure_chromium
        run_tests "$@"
        ;;
    -h | --help | help | "")
        usage
        ;;
    *)
        usage >&2
        exit 2
        ;;
esac
