#!/usr/bin/env bash
# End-to-end benchmark of `mlc sync` (DESIGN.md §15): starts the sandbox as a separate process
# at a scale, syncs one large stream into the embedded warehouse (fetch -> decode -> Parquet ->
# merge) and prints, over the wall time of the whole `mlc sync` process (what a user waits for),
# rows/s and MB/s of JSON decoded, the peak RSS and CPU time (user+system) of the mlc process,
# the CPU time the sandbox spent serving it (it shares the two cores: it must not be the
# bottleneck) and the load average when it ends.
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

# shellcheck source=bench/common.sh
source bench/common.sh
bench_binary
PORT=${MLC_BENCH_PORT:-18800}

for scale in "${SCALES[@]}"; do
  for stream in "${STREAMS[@]}"; do
    work=$(mktemp -d)
    bench_sandbox "$scale" "$work"
    trap 'bench_stop "$work"' EXIT
    sandbox_cpu_before=$(bench_cpu_seconds "$SANDBOX_PID")
    /usr/bin/time -v "$MLC" --config "$work/project/mlc.toml" sync "$stream" --json \
        > "$work/summary.json" 2> "$work/time.txt" || { cat "$work/time.txt" >&2; exit 1; }
    sandbox_cpu=$(python3 -c "print($(bench_cpu_seconds "$SANDBOX_PID") - $sandbox_cpu_before)")
    python3 - "$scale" "$work/summary.json" "$work/time.txt" "$sandbox_cpu" <<'PY'
import json, re, sys
scale, summary, timing, sandbox_cpu = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
s = json.load(open(summary))[0]
t = open(timing).read()
rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
system = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
h, m, sec = ([0, 0] + re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", t).group(1).split(":"))[-3:]
# What a user waits for: the whole `mlc sync` process, start to exit.
wall = int(h) * 3600 + int(m) * 60 + float(sec)
print(f"{s['stream']:<32} scale={int(scale):>8}  rows={s['rows_extracted']:>9}  "
      f"wall={wall:7.2f} s  rows/s={s['rows_extracted']/wall:>8.0f}  "
      f"JSON MB/s={s['json_bytes']/1e6/wall:6.1f}  peak RSS={rss_kb/1024:6.1f} MiB  "
      f"mlc CPU={user:.1f}+{system:.1f} s (user+sys)  sandbox CPU={sandbox_cpu:.1f} s  "
      f"load avg (1/5/15 min)={' '.join(open('/proc/loadavg').read().split()[:3])}")
PY
    bench_stop "$work"
    trap - EXIT
  done
done
