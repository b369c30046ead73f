#!/usr/bin/env bash
# End-to-end benchmark of `mlc sync` (DESIGN.md §15): starts the sandbox as a separate process
# at a scale, syncs one large stream into the embedded warehouse (fetch -> decode -> Parquet ->
# merge) and prints rows/s, MB/s of JSON decoded and peak RSS of the mlc process.
#
#   bench/sync.sh [SCALE ...]                 default: 100000 1000000, stream dataverse.account
#   MLC_BENCH_STREAMS="dataverse.account deltek.project business_central.general_ledger_entry pipedrive.deal" \
#     bench/sync.sh 100000                    one large stream per system
#
# SCALE is the sandbox's --scale (Dataverse accounts; the other systems size their tables from
# it, see `mlc sandbox --help`). Needs the release binary (built here if missing) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALES=("${@:-100000 1000000}")
# shellcheck disable=SC2206
SCALES=(${SCALES[*]})
# shellcheck disable=SC2206
STREAMS=(${MLC_BENCH_STREAMS:-dataverse.account})

# MLC_BENCH_BIN: time that binary instead of building the release one (e.g. a build of another
# profile; say which when quoting figures).
if [ -n "${MLC_BENCH_BIN:-}" ]; then
  MLC="$MLC_BENCH_BIN"
else
  cargo build --release --quiet --bin mlc
  MLC="$PWD/target/release/mlc"
fi
PORT=${MLC_BENCH_PORT:-18800}

for scale in "${SCALES[@]}"; do
  for stream in "${STREAMS[@]}"; do
    work=$(mktemp -d)
    "$MLC" sandbox --port "$PORT" --scale "$scale" --project "$work/project" > "$work/sandbox.out" 2>&1 &
    sb=$!
    trap 'kill $sb 2>/dev/null || true; rm -rf "$work"' EXIT
    for _ in $(seq 1 300); do
      [ -f "$work/project/mlc.toml" ] && curl -sf "http://127.0.0.1:$PORT/_sandbox/health" >/dev/null 2>&1 && break
      sleep 0.1
    done
    /usr/bin/time -v "$MLC" --config "$work/project/mlc.toml" sync "$stream" --json \
        > "$work/summary.json" 2> "$work/time.txt" || { cat "$work/time.txt" >&2; exit 1; }
    python3 - "$scale" "$work/summary.json" "$work/time.txt" <<'PY'
import json, re, sys
scale, summary, timing = sys.argv[1], sys.argv[2], sys.argv[3]
s = json.load(open(summary))[0]
t = open(timing).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
wall = s["seconds"]
print(f"{s['stream']:<40} scale={int(scale):>8}  rows={s['rows_extracted']:>9}  "
      f"seconds={wall:7.2f}  rows/s={s['rows_extracted']/wall:>8.0f}  "
      f"JSON MB/s={s['json_bytes']/1e6/wall:6.1f}  peak RSS={rss_kb/1024:6.1f} MiB")
PY
    kill "$sb" 2>/dev/null || true
    wait "$sb" 2>/dev/null || true
    rm -rf "$work"
    trap - EXIT
  done
done
