#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests of the Postgres state backend.
#
#   source .ci/postgres.sh && postgres_start   # installs if needed, starts, exports the URL
#   postgres_stop                             # stops the cluster and deletes its folder
#
# postgres_start uses the newest server found under /usr/lib/postgresql/*/bin (Debian's
# `postgresql` package, installed with apt-get when there is none), creates a cluster in a fresh
# temporary folder (trust authentication, superuser `mlc`, fsync off: nothing in it outlives the
# run), starts it on 127.0.0.1 only, creates the database `mlc` and exports the variable the
# tests read:
#   MLC_TEST_POSTGRES_URL  postgres://mlc@127.0.0.1:PORT/mlc?sslrootcert=DIR/ca.pem
#   MLC_TEST_POSTGRES_CA   DIR/ca.pem (the server speaks TLS with a certificate this CA signed)
# The port is MLC_PG_PORT (55432), or the next free one of the ten from there. As root, the
# cluster belongs to the `postgres` OS user (initdb refuses to run as root). MLC_PG_DIR names the
# cluster's folder; a second postgres_start while that cluster runs only exports the URL again.

# Prints the bin folder of the newest PostgreSQL server installed, or nothing.
postgres_bin() {
    local f
    for f in /usr/lib/postgresql/*/bin/initdb; do
        if [ -x "$f" ]; then dirname "$f"; fi
    done | sort -V | tail -n 1
    return 0
}

postgres_install() {
    [ -n "$(postgres_bin)" ] && return 0
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "postgres: no server under /usr/lib/postgresql and no root to install one; run: apt-get install -y --no-install-recommends postgresql" >&2
            return 1
        fi
        sudo="sudo"
    fi
    echo "postgres: installing the Debian package postgresql"
    # A fresh machine may have no package lists yet: update once when the install fails.
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; then
        $sudo apt-get update -q &&
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql ||
            return 1
    fi
    if [ -z "$(postgres_bin)" ]; then
        echo "postgres: apt-get installed postgresql but /usr/lib/postgresql/*/bin/initdb matches nothing" >&2
        return 1
    fi
}

# Runs a server binary as the cluster's owner: the postgres user when we are root, else us.
# From the cluster's folder, so the postgres user never needs to read our working directory.
postgres_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        (cd "$MLC_PG_DIR" && runuser -u postgres -- "$@")
    else
        (cd "$MLC_PG_DIR" && "$@")
    fi
}

# True when something accepts TCP connections on 127.0.0.1:$1.
postgres_port_taken() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A CA of the run's own and a server certificate it signed for 127.0.0.1, so the tests reach
# the server over TLS and verify it as they would a managed server (sslrootcert = the CA).
postgres_certs() {
    local d="$MLC_PG_DIR"
    if ! command -v openssl >/dev/null; then
        echo "postgres: installing the Debian package openssl (for the test server's certificate)"
        apt-get install -y -q --no-install-recommends openssl >/dev/null || return 1
    fi
    (
        set -e
        cd "$d"
        openssl req -x509 -new -nodes -days 3 -subj "/CN=mlc test CA" -newkey rsa:2048 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
            -keyout ca.key -out ca.pem
        openssl req -new -nodes -subj "/CN=127.0.0.1" -newkey rsa:2048 -keyout server.key -out server.csr
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3 \
            -extfile server.ext -out server.crt
        chmod 600 server.key
        if [ "$(id -u)" = 0 ]; then chown postgres: server.key server.crt ca.pem; fi
    ) >"$d/certs.log" 2>&1 || {
        echo "postgres: making the test certificates failed:" >&2
        cat "$d/certs.log" >&2
        return 1
    }
}

postgres_start() {
    local bin port first="${MLC_PG_PORT:-55432}" started=""

    # Already started in this shell and still running: nothing to do but export the URL again.
    if [ -n "${MLC_PG_DIR:-}" ] && [ -n "${MLC_PG_BIN:-}" ] && [ -n "${MLC_PG_PORT_USED:-}" ] &&
        [ -d "$MLC_PG_DIR/data" ] && postgres_as_owner "$MLC_PG_BIN/pg_ctl" -D "$MLC_PG_DIR/data" status >/dev/null 2>&1; then
        export MLC_TEST_POSTGRES_CA="$MLC_PG_DIR/ca.pem"
        export MLC_TEST_POSTGRES_URL="postgres://mlc@127.0.0.1:$MLC_PG_PORT_USED/mlc?sslrootcert=$MLC_TEST_POSTGRES_CA"
        echo "postgres: already running at $MLC_TEST_POSTGRES_URL (cluster in $MLC_PG_DIR)"
        return 0
    fi
    postgres_stop # a cluster this shell started that is gone or half there

    postgres_install || return 1
    bin="$(postgres_bin)"
    if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
        echo "postgres: running as root but there is no postgres user to own the cluster (initdb refuses root)" >&2
        return 1
    fi

    MLC_PG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/mlc-pg.XXXXXX")" || return 1
    export MLC_PG_DIR MLC_PG_BIN="$bin"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$MLC_PG_DIR" || return 1
        if ! runuser -u postgres -- test -w "$MLC_PG_DIR"; then
            echo "postgres: the postgres user cannot reach $MLC_PG_DIR (a private TMPDIR?); run with TMPDIR=/tmp" >&2
            return 1
        fi
    fi
    if ! postgres_as_owner "$bin/initdb" -D "$MLC_PG_DIR/data" -A trust -U mlc \
        --encoding=UTF8 --no-locale >"$MLC_PG_DIR/initdb.log" 2>&1; then
        echo "postgres: initdb failed ($bin/initdb):" >&2
        tail -n 30 "$MLC_PG_DIR/initdb.log" >&2
        return 1
    fi

    postgres_certs || return 1

    # The first free port from MLC_PG_PORT; a port taken between the probe and the bind (the
    # server says so in its log) moves on to the next one too.
    for ((port = first; port < first + 10; port++)); do
        if postgres_port_taken "$port"; then
            echo "postgres: port $port is taken, trying $((port + 1))"
            continue
        fi
        postgres_as_owner truncate -s 0 "$MLC_PG_DIR/log"
        if postgres_as_owner "$bin/pg_ctl" -D "$MLC_PG_DIR/data" -l "$MLC_PG_DIR/log" -w -t 60 \
            -o "-p $port -k '$MLC_PG_DIR' -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on -c ssl_cert_file='$MLC_PG_DIR/server.crt' -c ssl_key_file='$MLC_PG_DIR/server.key'" \
            start >"$MLC_PG_DIR/pg_ctl.out" 2>&1; then
            started="$port"
            break
        fi
        if grep -q 'could not create any TCP/IP sockets\|Address already in use' "$MLC_PG_DIR/log"; then
            postgres_as_owner "$bin/pg_ctl" -D "$MLC_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
            echo "postgres: port $port was taken when the server bound it, trying $((port + 1))"
            continue
        fi
        echo "postgres: the server did not start on port $port ($bin/pg_ctl):" >&2
        cat "$MLC_PG_DIR/pg_ctl.out" >&2
        echo "postgres: the server's log:" >&2
        tail -n 30 "$MLC_PG_DIR/log" >&2
        return 1
    done
    if [ -z "$started" ]; then
        echo "postgres: no free port in $first..$((first + 9)) (set MLC_PG_PORT)" >&2
        return 1
    fi
    export MLC_PG_PORT_USED="$started"

    if ! "$bin/createdb" -h 127.0.0.1 -p "$started" -U mlc mlc; then
        echo "postgres: createdb mlc failed; the server's log:" >&2
        tail -n 30 "$MLC_PG_DIR/log" >&2
        return 1
    fi
    export MLC_TEST_POSTGRES_CA="$MLC_PG_DIR/ca.pem"
    export MLC_TEST_POSTGRES_URL="postgres://mlc@127.0.0.1:$started/mlc?sslrootcert=$MLC_TEST_POSTGRES_CA"
    echo "postgres: $("$bin/postgres" --version) at $MLC_TEST_POSTGRES_URL (cluster in $MLC_PG_DIR)"
}

postgres_stop() {
    if [ -n "${MLC_PG_DIR:-}" ] && [ -d "$MLC_PG_DIR" ]; then
        if [ -n "${MLC_PG_BIN:-}" ] && [ -f "$MLC_PG_DIR/data/postmaster.pid" ]; then
            postgres_as_owner "$MLC_PG_BIN/pg_ctl" -D "$MLC_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        fi
        case "$MLC_PG_DIR" in
        */mlc-pg.*) rm -rf "$MLC_PG_DIR" ;; # only a folder postgres_start made
        esac
    fi
    unset MLC_PG_DIR MLC_PG_BIN MLC_PG_PORT_USED MLC_TEST_POSTGRES_URL MLC_TEST_POSTGRES_CA
    return 0
}

# Run as a script: `.ci/postgres.sh start` starts and prints the exports (keep them: `stop`
# needs MLC_PG_DIR and MLC_PG_BIN); `stop` stops.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    case "${1:-}" in
    start)
        postgres_start >&2 || exit 1
        echo "export MLC_TEST_POSTGRES_URL='$MLC_TEST_POSTGRES_URL'"
        echo "export MLC_TEST_POSTGRES_CA='$MLC_TEST_POSTGRES_CA'"
        echo "export MLC_PG_DIR='$MLC_PG_DIR'"
        echo "export MLC_PG_BIN='$MLC_PG_BIN'"
        echo "export MLC_PG_PORT_USED='$MLC_PG_PORT_USED'"
        ;;
    stop) postgres_stop ;;
    *)
        echo "usage: $0 start|stop   (or: source $0; postgres_start; ...; postgres_stop)" >&2
        exit 2
        ;;
    esac
fi
