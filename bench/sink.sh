#!/usr/bin/env bash
# End-to-end benchmark of the sink stage (DESIGN.md §9): starts the sandbox as a separate process
# at a scale, syncs the source streams of a flow into the lake, then times `mlc sink apply FLOW
# --yes` against the sandbox target and prints jobs, jobs/s, creates and the apply's peak RSS.
#
#   bench/sink.sh [SCALE ...]                       default: 2000 20000, flow dynamics_to_deltek
#   MLC_BENCH_FLOW=pipedrive_to_business_central bench/sink.sh 2000 20000
#
# The sandbox answers in microseconds, so this measures the sink's own cost per job (plan,
# searches, ledger and audit commits); against a real tenant the connection's
# `requests_per_minute` bounds it. Needs the release binary (built here if missing; or
# MLC_BENCH_BIN) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALES=("${@:-2000 20000}")
# shellcheck disable=SC2206
SCALES=(${SCALES[*]})
FLOW=${MLC_BENCH_FLOW:-dynamics_to_deltek}
case "$FLOW" in
  dynamics_to_deltek)
    SOURCES="dataverse.systemuser dataverse.account dataverse.contact dataverse.opportunity" ;;
  pipedrive_to_business_central)
    SOURCES="pipedrive.organization pipedrive.person pipedrive.product pipedrive.deal pipedrive.deal_product" ;;
  *) echo "bench/sink.sh: no source list for flow $FLOW" >&2; exit 2 ;;
esac

# shellcheck source=bench/common.sh
source bench/common.sh
bench_binary
PORT=${MLC_BENCH_PORT:-18810}

for scale in "${SCALES[@]}"; do
  work=$(mktemp -d)
  bench_sandbox "$scale" "$work"
  trap 'bench_stop "$work"' EXIT
  # shellcheck disable=SC2086
  "$MLC" --config "$work/project/mlc.toml" sync $SOURCES > "$work/sync.out" 2>&1 \
    || { cat "$work/sync.out" >&2; exit 1; }
  set +e
  /usr/bin/time -v "$MLC" --config "$work/project/mlc.toml" sink apply "$FLOW" --yes --json \
      > "$work/apply.json" 2> "$work/time.txt"
  status=$?
  set -e
  # Exit 1 = some jobs failed (ambiguous matches the sink refuses to guess); anything else is an error.
  [ "$status" -le 1 ] || { cat "$work/time.txt" >&2; exit 1; }
  python3 - "$FLOW" "$scale" "$work/apply.json" "$work/time.txt" <<'PY'
import json, re, sys
flow, scale, report, timing = sys.argv[1:5]
r = json.load(open(report))
t = open(timing).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
jobs = len(r["jobs"])
print(f"{flow:<32} scale={int(scale):>7}  jobs={jobs:>7}  created={r['created']:>7}  "
      f"failed={r['failed']:>4}  seconds={wall:7.2f}  jobs/s={jobs / wall:>7.0f}  "
      f"peak RSS={rss_kb / 1024:6.1f} MiB")
PY
  bench_stop "$work"
  trap - EXIT
done
