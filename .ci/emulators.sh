#!/usr/bin/env bash
# Real emulators for the integration tests: bqemulator (BigQuery REST) and moto (S3).
#
#   source .ci/emulators.sh && emulators_start   # installs, starts, exports MLC_TEST_* vars
#   emulators_stop                              # stops what emulators_start started
#
# emulators_start installs both into a venv at .ci/.venv-emu (pins from
# shared/reference/emulators-and-build.md), starts them on 127.0.0.1, waits until they answer,
# and exports the variables the tests read:
#   MLC_TEST_BIGQUERY_URL  BigQuery v2 base URL (http://127.0.0.1:PORT/bigquery/v2)
#   MLC_TEST_BIGQUERY_PROJECT  the emulator's project
#   MLC_TEST_GCS_ROOT      folder the emulator resolves gs://<bucket>/<key> against
#                          (<root>/<bucket>/<key>); tests write their lakes below it
#   MLC_TEST_S3_URL        the S3 endpoint (moto server)
# Ports come from MLC_EMU_BQ_PORT (9050), MLC_EMU_BQ_GRPC_PORT (9060), MLC_EMU_S3_PORT (5055).

EMU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
EMU_VENV="$EMU_DIR/.venv-emu"
EMU_RUN="$EMU_DIR/.emu-run"

emulators_install() {
    if [ ! -x "$EMU_VENV/bin/python" ]; then
        python3 -m venv "$EMU_VENV"
    fi
    # pip skips what is already there, so a second run costs seconds.
    "$EMU_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        'bqemulator==1.4.0' 'duckdb==1.5.6' numpy 'moto[server]==5.2.5'
}

# Waits until URL answers (any HTTP status), up to $2 seconds.
emulators_wait() {
    local url="$1" secs="$2" i
    for ((i = 0; i < secs * 4; i++)); do
        if "$EMU_VENV/bin/python" - "$url" <<'PY' 2>/dev/null; then
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
PY
            return 0
        fi
        sleep 0.25
    done
    echo "emulators: $url did not answer within ${secs}s" >&2
    return 1
}

emulators_start() {
    local bq_port="${MLC_EMU_BQ_PORT:-9050}" grpc_port="${MLC_EMU_BQ_GRPC_PORT:-9060}"
    local s3_port="${MLC_EMU_S3_PORT:-5055}"
    emulators_install || return 1
    rm -rf "$EMU_RUN"
    mkdir -p "$EMU_RUN/gcs" "$EMU_RUN/home"

    # bqemulator keeps its data in memory; HOME keeps whatever it caches out of the real one.
    HOME="$EMU_RUN/home" BQEMU_GCS_LOCAL_ROOT="$EMU_RUN/gcs" \
        "$EMU_VENV/bin/python" "$EMU_DIR/bqemu_launch.py" start \
        --rest-host 127.0.0.1 --rest-port "$bq_port" \
        --grpc-host 127.0.0.1 --grpc-port "$grpc_port" --project test-project \
        >"$EMU_RUN/bqemulator.log" 2>&1 &
    echo $! >"$EMU_RUN/bqemulator.pid"

    "$EMU_VENV/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$EMU_RUN/moto.log" 2>&1 &
    echo $! >"$EMU_RUN/moto.pid"

    if ! emulators_wait "http://127.0.0.1:$bq_port/healthz" 60; then
        tail -n 30 "$EMU_RUN/bqemulator.log" >&2
        return 1
    fi
    if ! emulators_wait "http://127.0.0.1:$s3_port/" 60; then
        tail -n 30 "$EMU_RUN/moto.log" >&2
        return 1
    fi
    export MLC_TEST_BIGQUERY_URL="http://127.0.0.1:$bq_port/bigquery/v2"
    export MLC_TEST_BIGQUERY_PROJECT="test-project"
    export MLC_TEST_GCS_ROOT="$EMU_RUN/gcs"
    export MLC_TEST_S3_URL="http://127.0.0.1:$s3_port"
    echo "emulators: BigQuery at $MLC_TEST_BIGQUERY_URL (gs:// root $MLC_TEST_GCS_ROOT), S3 at $MLC_TEST_S3_URL"
}

emulators_stop() {
    local f pid
    for f in "$EMU_RUN"/*.pid; do
        [ -e "$f" ] || continue
        pid="$(cat "$f")"
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
        rm -f "$f"
    done
    return 0
}

# Run as a script: `.ci/emulators.sh start` starts and prints the exports; `stop` stops.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-}" in
    start)
        emulators_start >&2 || exit 1
        echo "export MLC_TEST_BIGQUERY_URL='$MLC_TEST_BIGQUERY_URL'"
        echo "export MLC_TEST_BIGQUERY_PROJECT='$MLC_TEST_BIGQUERY_PROJECT'"
        echo "export MLC_TEST_GCS_ROOT='$MLC_TEST_GCS_ROOT'"
        echo "export MLC_TEST_S3_URL='$MLC_TEST_S3_URL'"
        ;;
    stop) emulators_stop ;;
    *)
        echo "usage: $0 start|stop   (or: source $0; emulators_start; ...; emulators_stop)" >&2
        exit 2
        ;;
    esac
fi
