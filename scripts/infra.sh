#!/usr/bin/env bash
# Throwaway infrastructure on loopback for tests, the demo and development:
# PostgreSQL, NATS with JetStream, and a Consul agent, each on a spare port;
# a MongoDB-compatible server when asked; and the SMTP server tests start
# themselves (python3-aiosmtpd) installed.
#
#   scripts/infra.sh up [postgres] [nats] [consul] [mongodb]
#                                                    start them (default: the
#                                                    first three), print
#                                                    `export` lines to eval
#   scripts/infra.sh env                             print the export lines again
#   scripts/infra.sh down                            stop them and delete their data
#
# Missing programs come from Debian's packages: PostgreSQL and nats-server with
# apt-get; Consul 1.8.7 exists only in Debian's bullseye suite, so its package
# is downloaded from that suite (the source entry is derived from this
# machine's own Debian source) and only its binary is unpacked, into a cache.
#
# No genuine MongoDB server installs on these machines: `mongodb` starts the
# MongoDB-wire-compatible stand-in in shared/tools/documentdb beside the
# repository (Microsoft DocumentDB; first use builds it, minutes, ~1 GB,
# cached in /var/cache/documentdb-standin), or $DOCUMENTDB_SH if set. It is
# shared by everything on the machine: `down` stops it only if this `up`
# started it. Without a stand-in it says so, and MongoDB tests are skipped.
#
# A service already given in the environment is reused, not started:
# TEST_DATABASE_URL (a PostgreSQL URL naming a database we may CREATE DATABASE
# from), TEST_NATS_URL, TEST_CONSUL_HTTP_ADDR, TEST_MONGODB_URL (a MongoDB URL
# whose user may create databases).
#
# Consul runs with ACLs on (default deny); its management token is exported as
# TEST_CONSUL_MANAGEMENT_TOKEN (passed through with a reused agent, if set), for
# scripts/consul-acl.sh to make the services' tokens.
#
# State lives in $SHIPPY_INFRA_DIR (default: .infra in the repository); the
# export lines are also written to $SHIPPY_INFRA_DIR/env.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${SHIPPY_INFRA_DIR:-$repo/.infra}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/shippy-rs
envfile=$state/env

log() { printf 'infra: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=lib/debian.sh
. "$repo/scripts/lib/debian.sh"

spare_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_port PORT WHAT [SECONDS]
wait_for_port() {
    local port=$1 what=$2 limit=${3:-30} i
    for ((i = 0; i < limit * 10; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    die "$what did not open port $port within ${limit}s (see its log in $state)"
}

apt_updated=
apt_install() {
    command -v apt-get >/dev/null || die "need $* but apt-get is not available; install it by hand"
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        apt-get update -qq >&2
        apt_updated=1
    fi
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

as_postgres() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

postgres_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
    done
    command -v initdb >/dev/null && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

start_postgres() {
    if [ -n "${TEST_DATABASE_URL:-}" ]; then
        log "PostgreSQL: reusing TEST_DATABASE_URL"
        echo "export TEST_DATABASE_URL='$TEST_DATABASE_URL'" >>"$envfile"
        return
    fi
    local bindir
    bindir=$(postgres_bindir) || { apt_install postgresql; bindir=$(postgres_bindir); } ||
        die "PostgreSQL is not installed and could not be installed"
    # The data directory lives under /dev/shm when it has room (a throwaway
    # database in memory: faster, and a full run's ~150 test databases never
    # touch the disk), else /tmp: the postgres user must reach it, whatever
    # the permissions on the repository's parent directories.
    local dir port base=/tmp
    if [ -d /dev/shm ] && [ -w /dev/shm ] &&
        [ "$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')" -gt 4194304 ] 2>/dev/null; then
        base=/dev/shm
    fi
    dir=$(mktemp -d "$base/shippy-postgres.XXXXXX")
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    echo "$dir" >"$state/postgres.dir"
    port=$(spare_port)
    as_postgres "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$state/postgres-init.log" 2>&1 ||
        die "initdb failed: $(tail -5 "$state/postgres-init.log")"
    as_postgres "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >"$state/postgres-start.log" 2>&1 ||
        die "PostgreSQL did not start: $(tail -5 "$dir/postgres.log" 2>/dev/null)"
    echo "$bindir" >"$state/postgres.bindir"
    log "PostgreSQL listening on 127.0.0.1:$port (log: $dir/postgres.log)"
    echo "export TEST_DATABASE_URL='postgres://postgres@127.0.0.1:$port/postgres'" >>"$envfile"
}

stop_postgres() {
    [ -f "$state/postgres.dir" ] || return 0
    local dir bindir
    dir=$(cat "$state/postgres.dir")
    bindir=$(cat "$state/postgres.bindir" 2>/dev/null || postgres_bindir || true)
    if [ -n "$bindir" ] && [ -d "$dir/data" ]; then
        as_postgres "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir" "$state/postgres.dir" "$state/postgres.bindir"
    log "PostgreSQL stopped"
}

start_nats() {
    if [ -n "${TEST_NATS_URL:-}" ]; then
        log "NATS: reusing TEST_NATS_URL"
        echo "export TEST_NATS_URL='$TEST_NATS_URL'" >>"$envfile"
        return
    fi
    command -v nats-server >/dev/null || apt_install nats-server
    local port
    port=$(spare_port)
    mkdir -p "$state/nats"
    nats-server -a 127.0.0.1 -p "$port" -js -sd "$state/nats" -P "$state/nats.pid" \
        >"$state/nats.log" 2>&1 &
    wait_for_port "$port" nats-server
    log "NATS (JetStream) listening on 127.0.0.1:$port (log: $state/nats.log)"
    echo "export TEST_NATS_URL='nats://127.0.0.1:$port'" >>"$envfile"
}

stop_nats() {
    stop_pid nats
    rm -rf "$state/nats"
}

consul_binary() {
    if command -v consul >/dev/null; then command -v consul; return; fi
    local bin=$cache/consul-1.8.7/consul
    if [ ! -x "$bin" ]; then
        install_consul_from_bullseye "$bin"
    fi
    echo "$bin"
}

# Debian's bullseye suite carries consul 1.8.7; later suites carry none.
install_consul_from_bullseye() {
    local target=$1 work
    work=$(mktemp -d)
    log "fetching consul 1.8.7 from Debian bullseye"
    fetch_from_suite bullseye "$work" consul
    mkdir -p "$(dirname "$target")"
    install -m 0755 "$work/unpacked/usr/bin/consul" "$target"
    rm -rf "$work"
    log "consul installed at $target"
}

start_consul() {
    # Tests that stop and restart Consul run agents of their own with this binary.
    echo "export TEST_CONSUL_BIN='$(consul_binary)'" >>"$envfile"
    if [ -n "${TEST_CONSUL_HTTP_ADDR:-}" ]; then
        log "Consul: reusing TEST_CONSUL_HTTP_ADDR"
        echo "export TEST_CONSUL_HTTP_ADDR='$TEST_CONSUL_HTTP_ADDR'" >>"$envfile"
        [ -z "${TEST_CONSUL_MANAGEMENT_TOKEN:-}" ] ||
            echo "export TEST_CONSUL_MANAGEMENT_TOKEN='$TEST_CONSUL_MANAGEMENT_TOKEN'" >>"$envfile"
        return
    fi
    local consul http dns serf_lan serf_wan server management
    consul=$(consul_binary)
    http=$(spare_port) dns=$(spare_port) serf_lan=$(spare_port) serf_wan=$(spare_port) server=$(spare_port)
    # ACLs on, default deny: nothing registers or reads without a token.
    # scripts/consul-acl.sh makes the services' tokens with this management
    # token (Consul 1.8 calls it `master`; the agent uses it for itself too).
    management=$(python3 -c 'import uuid; print(uuid.uuid4())')
    (
        umask 077
        cat >"$state/consul-acl.hcl" <<EOF
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
  tokens {
    master = "$management"
    agent = "$management"
  }
}
EOF
    )
    "$consul" agent -dev -node shippy-dev -bind 127.0.0.1 -client 127.0.0.1 \
        -http-port "$http" -dns-port "$dns" -grpc-port -1 \
        -serf-lan-port "$serf_lan" -serf-wan-port "$serf_wan" -server-port "$server" \
        -config-file "$state/consul-acl.hcl" \
        -pid-file "$state/consul.pid" >"$state/consul.log" 2>&1 &
    wait_for_port "$http" consul
    # The HTTP port opens before the dev server has elected itself leader.
    local i
    for ((i = 0; i < 300; i++)); do
        if python3 - "$http" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
leader = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/status/leader", timeout=1).read()
sys.exit(0 if leader.strip(b'"\n') else 1)
PY
        sleep 0.1
    done
    ((i < 300)) || die "consul elected no leader within 30s (see $state/consul.log)"
    log "Consul agent (ACLs on, default deny) listening on 127.0.0.1:$http (UI http://127.0.0.1:$http/ui, log: $state/consul.log)"
    echo "export TEST_CONSUL_HTTP_ADDR='127.0.0.1:$http'" >>"$envfile"
    echo "export TEST_CONSUL_MANAGEMENT_TOKEN='$management'" >>"$envfile"
}

stop_consul() {
    stop_pid consul
}

documentdb_script() {
    echo "${DOCUMENTDB_SH:-$repo/../shared/tools/documentdb/documentdb.sh}"
}

start_mongodb() {
    if [ -n "${TEST_MONGODB_URL:-}" ]; then
        log "MongoDB: reusing TEST_MONGODB_URL"
        echo "export TEST_MONGODB_URL='$TEST_MONGODB_URL'" >>"$envfile"
        return
    fi
    local docdb line
    docdb=$(documentdb_script)
    if [ ! -x "$docdb" ]; then
        log "MongoDB: no TEST_MONGODB_URL and no stand-in at $docdb:"
        log "         MongoDB tests will be SKIPPED (set TEST_MONGODB_URL to run them)"
        return
    fi
    if "$docdb" status >/dev/null 2>&1; then
        log "MongoDB: the DocumentDB stand-in is running already; reusing it"
    else
        log "MongoDB: starting the DocumentDB stand-in ($docdb; the first use builds it: minutes)"
        echo "$docdb" >"$state/documentdb.started"
    fi
    line=$("$docdb" up 2>>"$state/documentdb.log") ||
        die "the DocumentDB stand-in did not start: $(tail -5 "$state/documentdb.log")"
    case $line in
        MONGODB_URL=mongodb://*) ;;
        *) die "the DocumentDB stand-in printed no MONGODB_URL line (see $state/documentdb.log)" ;;
    esac
    log "MongoDB (DocumentDB stand-in, not a genuine mongod) listening on ${line##*@}"
    echo "export TEST_MONGODB_URL='${line#MONGODB_URL=}'" >>"$envfile"
}

stop_mongodb() {
    [ -f "$state/documentdb.started" ] || return 0
    "$(cat "$state/documentdb.started")" down >>"$state/documentdb.log" 2>&1 || true
    rm -f "$state/documentdb.started"
    log "MongoDB (DocumentDB stand-in) stopped"
}

stop_pid() {
    local name=$1 pidfile=$state/$1.pid pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    log "$name stopped"
}

# Tests start SMTP servers of their own with Debian's python3-aiosmtpd.
ensure_aiosmtpd() {
    /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || apt_install python3-aiosmtpd
}

up() {
    local wanted=("$@")
    [ ${#wanted[@]} -gt 0 ] || wanted=(postgres nats consul)
    if [ -f "$envfile" ]; then
        log "already up ($envfile exists); run '$0 down' first"
        cat "$envfile"
        return 0
    fi
    mkdir -p "$state"
    : >"$envfile"
    trap 'log "start failed; stopping what started"; down_all >/dev/null 2>&1 || true' ERR
    local what
    for what in "${wanted[@]}"; do
        case $what in
            postgres | nats | consul | mongodb) "start_$what" ;;
            *) die "unknown service '$what' (postgres, nats, consul or mongodb)" ;;
        esac
    done
    ensure_aiosmtpd
    trap - ERR
    cat "$envfile"
}

down_all() {
    stop_mongodb
    stop_consul
    stop_nats
    stop_postgres
    rm -f "$envfile"
}

case ${1:-} in
    up) shift; up "$@" ;;
    env) [ -f "$envfile" ] && cat "$envfile" || die "not up: run '$0 up'" ;;
    down) down_all ;;
    *) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
