#!/usr/bin/env bash
# The whole shippy-rs cluster natively, without Docker: infrastructure on
# loopback (scripts/infra.sh), an SMTP server that keeps what it receives
# (python3-aiosmtpd, in a maildir), the four services and api-gateway (JSON
# API and web UI) on spare ports.
#
#   scripts/cluster.sh demo   start it, walk through a user's first shipment,
#                             show the welcome mail, stop; exit 0 only if every
#                             step did what it should
#   scripts/cluster.sh dev    start it and keep it up until Ctrl-C
#   scripts/cluster.sh bench  release builds of it, plus a bare echo server as
#                             the baseline and the Go peer (bench/go-peer),
#                             driven by h2load in rounds (shippy-bench's
#                             `bench`); results in bench/results.{json,svg}
#
# SHIPPY_PROFILE=release runs demo and dev on release builds (bench always does).
# STORE=postgres (the default) or STORE=mongodb chooses where vessel- and
# consignment-service keep their data; users are always in PostgreSQL. With
# mongodb, infra.sh starts the MongoDB-compatible stand-in
# (shared/tools/documentdb) unless TEST_MONGODB_URL names a server.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

export SHIPPY_INFRA_DIR=${SHIPPY_INFRA_DIR:-$repo/.infra/cluster-$$}
run=$SHIPPY_INFRA_DIR/run
profile=${SHIPPY_PROFILE:-debug}
[ "${1:-}" = bench ] && profile=release
bin=${CARGO_TARGET_DIR:-$repo/target}/$profile
pids=()
# make bench times each service's cold start (start_service) with these.
cold_start_clock='' clocks=()

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
fail() { printf '\n\033[31mFAILED: %s\033[0m\n' "$*" >&2; exit 1; }

spare_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

keep_logs=1
bcrypt_cost=${BCRYPT_COST:-10}
store=${STORE:-postgres}
case $store in
    postgres | mongodb) ;;
    *) fail "STORE must be postgres or mongodb, not '$store'" ;;
esac

# mongodb_url DATABASE: the test MongoDB server's URL naming DATABASE, still
# authenticating where the server's URL said (authSource).
mongodb_url() {
    python3 - "$TEST_MONGODB_URL" "$1" <<'PY'
import sys, urllib.parse as up
url, database = sys.argv[1], sys.argv[2]
parts = up.urlsplit(url)
query = up.parse_qsl(parts.query)
if parts.username and not any(key == "authSource" for key, _ in query):
    query.append(("authSource", parts.path.strip("/") or "admin"))
print(up.urlunsplit(parts._replace(path="/" + database, query=up.urlencode(query))))
PY
}

stop_all() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    scripts/infra.sh down >/dev/null 2>&1 || true
    if [ "$keep_logs" = 1 ]; then
        [ -d "$run" ] && echo "logs kept in $run" >&2
    else
        rm -rf "$SHIPPY_INFRA_DIR"
    fi
}

ensure_probe() {
    python3 -c 'import grpc, grpc_reflection, grpc_health' 2>/dev/null ||
        python3 -m pip install -q --disable-pip-version-check grpcio grpcio-reflection grpcio-health-checking >&2
}

# service_pid NAME: the pid start_service recorded for NAME.
service_pid() { cat "$run/$1.pid"; }

wait_serving() { # NAME PORT
    local i pid
    pid=$(service_pid "$1")
    for ((i = 0; i < 300; i++)); do
        if [ "$(python3 scripts/smoke/grpc_probe.py "127.0.0.1:$2" health 2>/dev/null)" = SERVING ]; then
            echo "    $1 is SERVING on 127.0.0.1:$2"
            return 0
        fi
        # A service that exited during start fails the start at once, with why.
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -5 "$run/$1.log" >&2
            local taken
            taken=$(grep -o 'Address already in use\|address in use\|[0-9.]*:[0-9]* .*in use' "$run/$1.log" | head -1 || true)
            fail "$1 exited during start${taken:+ ($taken)} (log: $run/$1.log)"
        fi
        sleep 0.1
    done
    tail -20 "$run/$1.log" >&2
    fail "$1 did not become healthy within 30 s (log: $run/$1.log)"
}

wait_ready() { # NAME PORT: an HTTP service whose /readyz answers 200
    local i
    for ((i = 0; i < 300; i++)); do
        if curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1; then
            echo "    $1 is ready on http://127.0.0.1:$2/"
            return 0
        fi
        kill -0 "$(service_pid "$1")" 2>/dev/null || { tail -5 "$run/$1.log" >&2; fail "$1 exited during start"; }
        sleep 0.1
    done
    fail "$1 did not become ready within 30 s: $(curl -s "http://127.0.0.1:$2/readyz") (log: $run/$1.log)"
}

wait_registered() { # NAME...
    local name i
    for name in "$@"; do
        for ((i = 0; i < 100; i++)); do
            curl -fs -H "X-Consul-Token: $TEST_CONSUL_MANAGEMENT_TOKEN" \
                "http://$TEST_CONSUL_HTTP_ADDR/v1/health/service/$name?passing=true" | grep -q '"ServiceID"' && break
            sleep 0.1
        done
        ((i < 100)) || fail "$name is not passing in Consul"
        echo "    $name is registered and passing in Consul"
    done
}

# consul_token NAME: the Consul ACL token made for NAME (a UUID).
consul_token() { cat "$run/$1.consul-token"; }

# Consul runs with ACLs on (default deny): each service gets a token that may
# register only its own name and read the catalog (scripts/consul-acl.sh).
make_consul_tokens() {
    local name variable tokens=()
    for name in user-service vessel-service consignment-service email-service api-gateway; do
        (umask 077 && python3 -c 'import uuid; print(uuid.uuid4())' >"$run/$name.consul-token")
        variable=$(printf '%s' "$name" | tr 'a-z-' 'A-Z_')_CONSUL_TOKEN
        tokens+=("$variable=$(consul_token "$name")")
    done
    env CONSUL="$TEST_CONSUL_BIN" CONSUL_HTTP_ADDR="$TEST_CONSUL_HTTP_ADDR" \
        CONSUL_HTTP_TOKEN="$TEST_CONSUL_MANAGEMENT_TOKEN" "${tokens[@]}" \
        scripts/consul-acl.sh user-service vessel-service consignment-service email-service api-gateway \
        2>"$run/consul-acl.log" || { cat "$run/consul-acl.log" >&2; fail "could not make the services' Consul tokens"; }
    (umask 077 && printf '%s\n' "$TEST_CONSUL_MANAGEMENT_TOKEN" >"$run/consul-management-token")
    echo "    a Consul ACL token per service (Consul's management token: $run/consul-management-token)"
}

start_service() { # NAME PORT ENV...
    local name=$1 port=$2 metrics_port since probe=--grpc
    shift 2
    # Spare metrics ports too, so a second cluster (a `make dev` elsewhere) never collides.
    metrics_port=$(spare_port)
    printf '%s' "$metrics_port" >"$run/$name.metrics-port"
    since=$EPOCHREALTIME
    env LISTEN_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$metrics_port" \
        CONSUL_HTTP_ADDR="$TEST_CONSUL_HTTP_ADDR" CONSUL_HTTP_TOKEN="$(consul_token "$name")" "$@" "$bin/$name" \
        >"$run/$name.log" 2>&1 &
    pids+=($!)
    echo $! >"$run/$name.pid"
    [ -n "$cold_start_clock" ] || return 0
    # make bench: ms from spawn to first SERVING (the api-gateway's: ready) and to listening, into NAME.cold-start.
    [ "$name" = api-gateway ] && probe=--readyz
    "$bin/serving-clock" --since "$since" "$probe" "127.0.0.1:$port" >"$run/$name.cold-start" 2>>"$run/serving-clock.log" &
    pids+=($!) clocks+=($!)
}

# metrics_url NAME: where NAME's Prometheus metrics are.
metrics_url() { echo "http://127.0.0.1:$(cat "$run/$1.metrics-port")/metrics"; }

up() {
    say "building ($profile)"
    if [ -n "${SHIPPY_SKIP_BUILD:-}" ]; then
        echo "    SHIPPY_SKIP_BUILD is set: running the binaries in $bin as they are"
    elif [ "$profile" = release ]; then
        cargo build --quiet --release --locked --bins
    else
        cargo build --quiet --locked --bins
    fi
    ensure_probe

    mkdir -p "$SHIPPY_INFRA_DIR"
    trap stop_all EXIT
    # A Consul agent given without its management token cannot hand out the
    # services' ACL tokens: start our own instead.
    [ -n "${TEST_CONSUL_MANAGEMENT_TOKEN:-}" ] || unset TEST_CONSUL_HTTP_ADDR
    if [ "$store" = mongodb ]; then
        say "starting PostgreSQL, NATS (JetStream), Consul and MongoDB (the DocumentDB stand-in) on loopback"
        eval "$(scripts/infra.sh up postgres nats consul mongodb)"
        [ -n "${TEST_MONGODB_URL:-}" ] || fail "STORE=mongodb, but no MongoDB server could be had (set TEST_MONGODB_URL)"
    else
        say "starting PostgreSQL, NATS (JetStream) and Consul on loopback"
        eval "$(scripts/infra.sh up)"
    fi
    mkdir -p "$run"
    make_consul_tokens
    local base=${TEST_DATABASE_URL%/*} db
    for db in users vessels consignments; do
        psql -q "$TEST_DATABASE_URL" -c "CREATE DATABASE $db" >/dev/null
    done
    vessels_url=$base/vessels consignments_url=$base/consignments
    if [ "$store" = mongodb ]; then
        # One fresh MongoDB database per cluster: the stand-in outlives it.
        vessels_url=$(mongodb_url "shippy_$$_$(date +%s)")
        consignments_url=$vessels_url
    fi

    say "starting an SMTP server that keeps what it receives"
    smtp_port=$(spare_port)
    maildir=$run/maildir
    /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$smtp_port" -c aiosmtpd.handlers.Mailbox "$maildir" \
        >"$run/smtp.log" 2>&1 &
    pids+=($!)

    say "starting the services (vessels and consignments in $store)"
    user_port=$(spare_port) vessel_port=$(spare_port) consignment_port=$(spare_port) email_port=$(spare_port)
    gateway_port=${SHIPPY_GATEWAY_PORT:-$(spare_port)}
    local key_env=()
    if command -v openssl >/dev/null; then
        openssl genpkey -algorithm ed25519 -out "$run/jwt-signing-key.pem" 2>/dev/null
        chmod 600 "$run/jwt-signing-key.pem"
        key_env=(JWT_SIGNING_KEY_FILE="$run/jwt-signing-key.pem")
    fi
    # The services' shared secret: vessel-service's reservations need it, and
    # with it the api-gateway names each browser's address to the services.
    service_token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    start_service user-service "$user_port" DATABASE_URL="$base/users" NATS_URL="$TEST_NATS_URL" \
        BCRYPT_COST="$bcrypt_cost" ADMIN_EMAILS="${ADMIN_EMAILS:-admin@example.com}" "${key_env[@]}" \
        SERVICE_TOKEN="$service_token"
    start_service vessel-service "$vessel_port" DATABASE_URL="$vessels_url" SERVICE_TOKEN="$service_token"
    # consignment-service finds vessel- and user-service through Consul.
    start_service consignment-service "$consignment_port" DATABASE_URL="$consignments_url" \
        SERVICE_TOKEN="$service_token"
    start_service email-service "$email_port" NATS_URL="$TEST_NATS_URL" SMTP_URL="smtp://127.0.0.1:$smtp_port"
    # api-gateway finds the three services through Consul too.
    start_service api-gateway "$gateway_port" SERVICE_TOKEN="$service_token"
    wait_serving user-service "$user_port"
    wait_serving vessel-service "$vessel_port"
    wait_serving consignment-service "$consignment_port"
    wait_serving email-service "$email_port"
    wait_ready api-gateway "$gateway_port"
    wait_registered user-service vessel-service consignment-service email-service api-gateway
    gateway_url=http://127.0.0.1:$gateway_port

    export USER_SERVICE_URL=http://127.0.0.1:$user_port
    export CONSIGNMENT_SERVICE_URL=http://127.0.0.1:$consignment_port
    export VESSEL_SERVICE_URL=http://127.0.0.1:$vessel_port
    export SHIPPY_CONFIG_DIR=$run/config
}

demo() {
    up
    local email="ewan+$$@example.com" password="correct horse battery"

    say "user-cli create: a new account"
    "$bin/user-cli" create --name "Ewan Valentine" --email "$email" --company Shippy --password "$password" ||
        fail "user-cli create"

    say "user-cli login: a token, saved for the other commands"
    "$bin/user-cli" login --email "$email" --password "$password" >/dev/null || fail "user-cli login"
    [ -s "$SHIPPY_CONFIG_DIR/token" ] || fail "the token was not saved"
    echo "    token saved to $SHIPPY_CONFIG_DIR/token"

    say "consignment-cli create consignment.json"
    local created
    created=$("$bin/consignment-cli" create consignment.json) || fail "consignment-cli create"
    echo "$created"
    [[ $created == *"on vessel vessel"* ]] || fail "the consignment has no vessel"

    say "consignment-cli list"
    local listed
    listed=$("$bin/consignment-cli" list) || fail "consignment-cli list"
    echo "$listed"
    [[ $listed == *"This is a test consignment"* ]] || fail "the consignment is not listed"

    say "the JSON API: api-gateway at $gateway_url (the web UI is at $gateway_url/)"
    local token answer
    token=$(curl -fsS -H 'content-type: application/json' \
        -d "{\"email\": \"$email\", \"password\": \"$password\"}" "$gateway_url/api/v1/login" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])') || fail "POST /api/v1/login"
    echo "    POST $gateway_url/api/v1/login -> a token"
    answer=$(curl -fsS -H "authorization: Bearer $token" "$gateway_url/api/v1/consignments?page_size=5") ||
        fail "GET /api/v1/consignments"
    echo "    GET  $gateway_url/api/v1/consignments -> $answer"
    [[ $answer == *'"This is a test consignment"'* ]] || fail "the API does not list the consignment"

    say "the welcome mail, as the SMTP server received it"
    local i mail=""
    for ((i = 0; i < 150; i++)); do
        mail=$(cat "$maildir"/new/* 2>/dev/null || true)
        [ -n "$mail" ] && break
        sleep 0.2
    done
    [ -n "$mail" ] || fail "no welcome mail arrived (logs: $run)"
    # Decoded (quoted-printable and all) by Python's email package: headers
    # and the plain-text part, with no pipeline that can die of SIGPIPE.
    local shown
    shown=$(python3 - "$maildir" <<'PY'
import email, email.policy, pathlib, sys
path = sorted(pathlib.Path(sys.argv[1], "new").iterdir())[0]
message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
for header in ("From", "To", "Subject", "Date"):
    print(f"{header}: {message[header]}")
print()
print(message.get_body(preferencelist=("plain",)).get_content().strip())
PY
) || fail "the mail could not be decoded"
    printf '%s\n' "$shown"
    [[ $shown == *"$email"* && $shown == *"Hi Ewan Valentine"* ]] || fail "the mail is not the welcome mail for $email"

    say "every step did what it should; stopping everything"
    keep_logs=0
}

dev() {
    up
    cat <<EOF

The shippy-rs cluster is up (Ctrl-C stops it):
  user-service         127.0.0.1:$user_port
  vessel-service       127.0.0.1:$vessel_port
  consignment-service  127.0.0.1:$consignment_port
  email-service        127.0.0.1:$email_port (health only)
  web UI and JSON API  $gateway_url/  (API under $gateway_url/api/v1, $gateway_url/api/openapi.json)
  metrics              $(metrics_url user-service) $(metrics_url vessel-service)
                       $(metrics_url consignment-service) $(metrics_url email-service)
                       $(metrics_url api-gateway)
  store                vessels and consignments in $store (STORE=postgres|mongodb)
  Consul UI            http://$TEST_CONSUL_HTTP_ADDR/ui (ACLs on: log in with the token in
                       $run/consul-management-token)
  SMTP server          smtp://127.0.0.1:$smtp_port, mails in $maildir/new
  admin account        sign up as ${ADMIN_EMAILS:-admin@example.com} to add vessels (ADMIN_EMAILS)
  logs                 $run/*.log

In another shell:
  export USER_SERVICE_URL=$USER_SERVICE_URL CONSIGNMENT_SERVICE_URL=$CONSIGNMENT_SERVICE_URL SHIPPY_CONFIG_DIR=$SHIPPY_CONFIG_DIR
  $bin/user-cli create --name Ada --email ada@example.com --password 'correct horse'
  $bin/user-cli login --email ada@example.com --password 'correct horse'
  $bin/consignment-cli create && $bin/consignment-cli list
EOF
    trap 'echo; echo "stopping"; stop_all; exit 0' INT TERM
    wait
}

bench() {
    bcrypt_cost=${BCRYPT_COST:-12}
    export RUST_LOG=${RUST_LOG:-warn}
    # The load generator signs up as this admin to add a vessel with room for
    # every consignment it creates: the seed fleet takes only a few.
    export ADMIN_EMAILS=${ADMIN_EMAILS:-admin@example.com},bench-admin@example.com
    # Its accounts create far more than vessel-service's per-account cap
    # (a quarter of the seed fleet) allows: the cap is lifted for the bench.
    export ACCOUNT_MAX_CONTAINERS=${ACCOUNT_MAX_CONTAINERS:-1000000000000}
    export ACCOUNT_MAX_WEIGHT=${ACCOUNT_MAX_WEIGHT:-1000000000000000}
    [ "$store" = postgres ] || fail "make bench measures the PostgreSQL stores (the Go peer uses them): STORE=postgres"
    command -v h2load >/dev/null || {
        say "installing h2load (Debian's nghttp2-client): the load generator"
        apt-get install -y -q nghttp2-client >/dev/null
    }
    say "building the Go peer (bench/go-peer, from Debian's Go packages)"
    local go_peer=${CARGO_TARGET_DIR:-$repo/target}/release/go-peer
    bench/go-peer/build.sh "$go_peer"
    cold_start_clock=1
    up
    say "starting the baseline: a bare tonic echo server"
    local echo_port
    echo_port=$(spare_port)
    "$bin/echo-server" --listen-addr "127.0.0.1:$echo_port" >"$run/echo-server.log" 2>&1 &
    pids+=($!)
    echo $! >"$run/echo-server.pid"
    local i
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$echo_port") 2>/dev/null && break
        sleep 0.1
    done

    say "starting the Go peer of consignment-service, on the same database and vessel-service"
    local go_port
    go_port=$(spare_port)
    LISTEN_ADDR="127.0.0.1:$go_port" DATABASE_URL="$consignments_url" USER_SERVICE_URL="$USER_SERVICE_URL" \
        VESSEL_SERVICE_URL="$VESSEL_SERVICE_URL" SERVICE_TOKEN="$service_token" \
        "$go_peer" >"$run/go-peer.log" 2>&1 &
    pids+=($!)
    echo $! >"$run/go-peer.pid"
    for ((i = 0; i < 300; i++)); do
        grep -q '^listening on ' "$run/go-peer.log" 2>/dev/null && break
        kill -0 "$(service_pid go-peer)" 2>/dev/null || { cat "$run/go-peer.log" >&2; fail "the Go peer exited"; }
        sleep 0.1
    done
    ((i < 300)) || fail "the Go peer did not start (log: $run/go-peer.log)"

    # PostgreSQL's postmaster: its CPU time and its backends' are measured.
    local postmaster
    postmaster=$(head -1 "$(psql -Atq "$TEST_DATABASE_URL" -c 'SHOW data_directory')/postmaster.pid")
    local watched=(--pid "postgres+=$postmaster") name pid
    for name in echo-server user-service consignment-service vessel-service email-service api-gateway go-peer; do
        watched+=(--pid "$name=$(service_pid "$name")")
    done
    for pid in "${clocks[@]}"; do wait "$pid" || true; done
    local serving listening
    for name in user-service consignment-service vessel-service email-service api-gateway; do
        read -r serving listening <"$run/$name.cold-start" || continue
        watched+=(--started "$name=$serving" --listening "$name=$listening")
    done

    say "load: h2load against each, ${BENCH_ROUNDS:-5} interleaved rounds of ${BENCH_SECONDS:-5} s a scenario"
    "$bin/bench" --echo "http://127.0.0.1:$echo_port" --users "$USER_SERVICE_URL" \
        --shipping "$CONSIGNMENT_SERVICE_URL" --go-shipping "http://127.0.0.1:$go_port" \
        --vessels "$VESSEL_SERVICE_URL" --admin-email bench-admin@example.com "${watched[@]}" \
        --seconds "${BENCH_SECONDS:-5}" --rounds "${BENCH_ROUNDS:-5}" --bcrypt-cost "$bcrypt_cost" \
        --label "${BENCH_LABEL:-$(git rev-parse --short HEAD 2>/dev/null || echo this tree)}" \
        --json "${BENCH_JSON:-bench/results.json}" --svg "${BENCH_SVG:-bench/results.svg}" ||
        fail "the load generator failed (logs: $run)"
    keep_logs=0
}

case ${1:-} in
    demo) demo ;;
    dev) dev ;;
    bench) bench ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
