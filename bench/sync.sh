#!/usr/bin/env bash
# End-to-end benchmark of `mlc sync` (DESIGN.md §15): starts the sandbox with ROWS accounts,
# syncs dataverse.account into the embedded warehouse (fetch -> decode -> Parquet -> merge)
# and prints rows/s, MB/s of JSON decoded and peak RSS of the mlc process.
#
#   bench/sync.sh [ROWS ...]        default: 100000 1000000
#
# Needs the release binary (built here if missing) and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=("${@:-100000 1000000}")
# shellcheck disable=SC2206
ROWS=(${ROWS[*]})

cargo build --release --quiet --bin mlc
MLC="$PWD/target/release/mlc"
PORT=${MLC_BENCH_PORT:-18800}

for rows in "${ROWS[@]}"; do
  work=$(mktemp -d)
  "$MLC" sandbox --port "$PORT" --scale "$rows" > "$work/sandbox.out" 2>&1 &
  sb=$!
  trap 'kill $sb 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$PORT/_sandbox/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  field() { sed -n "s/^  $1: *\([^ ]*\).*/\1/p" "$work/sandbox.out"; }
  cat > "$work/mlc.toml" <<TOML
[connections.bench]
system = "dataverse"
environment_url = "$(field 'Dataverse env URL')"
authority_url = "$(field 'Entra authority')"
tenant_id = "$(field 'tenant_id')"
client_id = "$(field 'client_id')"
client_secret = "\${MLC_BENCH_SECRET}"
# The sandbox is local: no reason to pace requests.
requests_per_minute = 1000000
TOML
  export MLC_BENCH_SECRET
  MLC_BENCH_SECRET="$(field 'client secret')"
  /usr/bin/time -v "$MLC" --config "$work/mlc.toml" sync dataverse.account --json \
      > "$work/summary.json" 2> "$work/time.txt"
  python3 - "$rows" "$work/summary.json" "$work/time.txt" <<'PY'
import json, re, sys
rows, summary, timing = sys.argv[1], sys.argv[2], sys.argv[3]
s = json.load(open(summary))[0]
t = open(timing).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
wall = s["seconds"]
print(f"rows={int(rows):>9}  extracted={s['rows_extracted']:>9}  table_rows={s['table_rows']:>9}  "
      f"seconds={wall:7.2f}  rows/s={s['rows_extracted']/wall:>9.0f}  "
      f"JSON MB/s={s['json_bytes']/1e6/wall:7.1f}  peak RSS={rss_kb/1024:6.1f} MiB")
PY
  kill "$sb" 2>/dev/null || true
  wait "$sb" 2>/dev/null || true
  rm -rf "$work"
  trap - EXIT
done
