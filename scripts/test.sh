#!/usr/bin/env bash
# The whole test suite, from a fresh clone: makes sure of the toolchain pieces it needs, then
# runs every test of the workspace, then the store-facing suites again on PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >&2

# The PostgreSQL pass starts its own server (tests/common/pg.rs) with the server binaries of
# Debian's `postgresql` package: installed here when no initdb is found where the harness
# looks (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH).
have_initdb() {
    local bindir
    bindir=$(pg_config --bindir 2>/dev/null) && [ -x "$bindir/initdb" ] && return 0
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null && return 0
    command -v initdb >/dev/null
}
if ! have_initdb; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends postgresql)
    # The package lists may be missing or stale on a fresh machine: refresh them only then.
    if ! "${install[@]}" >&2; then
        "${sudo[@]}" apt-get update >&2
        "${install[@]}" >&2
    fi
fi

cargo test --workspace --locked

# Suites that run twice, first on SQLite (above), then with BOTYARD_TEST_BACKEND=postgres, where
# every server and store handle of tests/common gets a fresh PostgreSQL database: the suites
# whose outcome depends on the store (Studio, OCS, admin, plugins, tenant isolation,
# durability, server lifecycle, hostile turns and deliveries), plus the harness's own test and
# the cluster test (three nodes on one database; it skips itself on SQLite).
# The others test the CSML language, the CLI's output or the SQLite store directly, which
# the backend choice does not reach.
PG_SUITES=(studio_api ocs_api ocs_openai ocs_scoping admin_api plugins isolation durability
    server hostile_turns hostile_delivery pg_harness cluster)
pg_targets=()
for suite in "${PG_SUITES[@]}"; do
    pg_targets+=(--test "$suite")
done
BOTYARD_TEST_BACKEND=postgres cargo test --locked "${pg_targets[@]}"
