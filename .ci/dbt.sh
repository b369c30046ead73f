#!/usr/bin/env bash
# CI step for the dbt project: install dbt-duckdb (pinned, .ci/dbt-requirements.txt) into
# .ci/.venv-dbt, run the debug `mlc demo` into a temporary folder, then `dbt build` (models and
# every test) against the demo's embedded warehouse. Fails on any dbt error or failing test.
# Needs target/debug/mlc (built by the cargo test step; override with MLC_BIN) and CPython 3.11
# (override with PYTHON). The staleness of the generated files is checked by `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

venv="$root/.ci/.venv-dbt"
req="$root/.ci/dbt-requirements.txt"
python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
mlc="${MLC_BIN:-$root/target/debug/mlc}"

if [[ ! -x "$mlc" ]]; then
    echo "dbt.sh: $mlc is missing; build it first (cargo build or cargo test)" >&2
    exit 1
fi

# (Re)create the venv when the pins change.
if [[ ! -x "$venv/bin/dbt" ]] || ! cmp -s "$req" "$venv/.installed-requirements"; then
    echo "== dbt: installing $(grep -E '^(dbt-core|dbt-duckdb|duckdb)==' "$req" | tr '\n' ' ')"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$venv/.installed-requirements"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== dbt: mlc demo into $work/demo"
if ! "$mlc" demo --dir "$work/demo" --scale "${MLC_DBT_SCALE:-400}" >"$work/demo.log" 2>&1; then
    cat "$work/demo.log" >&2
    exit 1
fi

export MLC_WAREHOUSE="$work/demo/.mlc/warehouse"
export MLC_DBT_DUCKDB="$work/mlc_local.duckdb"
export DBT_TARGET_PATH="$work/dbt-target"
export DBT_LOG_PATH="$work/dbt-logs"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false
export DBT_USE_COLORS=false

echo "== dbt: build (target local) on $MLC_WAREHOUSE"
cd "$root/dbt"
# A fixed as-of date keeps the AR aging reproducible.
"$venv/bin/dbt" build --profiles-dir . --target local --vars '{as_of_date: "2026-01-01"}'
