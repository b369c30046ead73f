#!/usr/bin/env bash
# Dependency audit: `cargo audit` against the RustSec advisory database, with the ignores and
# their reasons in .cargo/audit.toml. Fails on any advisory that is not ignored there.
#
# CI machines may have no network: when cargo-audit cannot be installed or no advisory database
# can be found, this prints a loud warning and exits 0, so a missing mirror never blocks a
# build (the warning says the audit did NOT run).
#
# The database, in this order:
#   1. $MLC_ADVISORY_DB: a checkout of github.com/rustsec/advisory-db;
#   2. a local mirror under /work/.mirror/rustsec+advisory-db* (a checkout, or a bare git
#      directory that is cloned into a temp checkout);
#   3. a shallow clone from GitHub, given at most $MLC_ADVISORY_CLONE_TIMEOUT seconds (60).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_AUDIT_VERSION=0.22.2

skip() {
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    echo "!!! WARNING: dependency audit SKIPPED: $*"
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    exit 0
}

if ! cargo audit --version >/dev/null 2>&1; then
    echo "installing cargo-audit $CARGO_AUDIT_VERSION"
    cargo install --locked --version "$CARGO_AUDIT_VERSION" cargo-audit ||
        skip "cargo-audit is not installed and \`cargo install --locked cargo-audit\` failed (no crates.io access?)"
fi
cargo audit --version

# A checkout of the database is a directory with crates/ in it.
is_db() { [ -d "$1/crates" ]; }

work="$(mktemp -d "${TMPDIR:-/tmp}/mlc-audit.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Clones git directory or URL $1 (within $2 seconds) into a fresh checkout; prints its path.
checkout() {
    local dest
    dest="$(mktemp -d "$work/db.XXXXXX")"
    timeout "$2" git clone --quiet --depth 1 "$1" "$dest/advisory-db" >&2 || return 1
    echo "$dest/advisory-db"
}

db=""
if [ -n "${MLC_ADVISORY_DB:-}" ]; then
    is_db "$MLC_ADVISORY_DB" || skip "MLC_ADVISORY_DB=$MLC_ADVISORY_DB is not an advisory-db checkout (no crates/ directory)"
    db="$MLC_ADVISORY_DB"
fi
if [ -z "$db" ]; then
    for m in /work/.mirror/rustsec+advisory-db*; do
        [ -e "$m" ] || continue
        if is_db "$m"; then
            db="$m"
        else
            for g in "$m" "$m/repo"; do
                if [ -d "$g" ] && git --git-dir="$g" rev-parse --verify -q HEAD >/dev/null 2>&1; then
                    db="$(checkout "file://$g" 120)" || db=""
                    [ -n "$db" ] && break
                fi
            done
        fi
        [ -n "$db" ] && break
    done
fi
if [ -z "$db" ]; then
    echo "no local advisory database; trying a shallow clone from GitHub"
    db="$(checkout https://github.com/rustsec/advisory-db "${MLC_ADVISORY_CLONE_TIMEOUT:-60}")" ||
        skip "no advisory database: MLC_ADVISORY_DB is unset, no mirror under /work/.mirror, and https://github.com/rustsec/advisory-db could not be cloned"
fi

echo "advisory database: $db ($(git -C "$db" log -1 --format='%h %cs' 2>/dev/null || echo 'not a git checkout'))"
# --stale: a mirror may lag; a stale database still catches everything it knows.
cargo audit --db "$db" --no-fetch --stale --deny warnings
