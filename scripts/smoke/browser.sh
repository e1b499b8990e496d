#!/usr/bin/env bash
# The web UI in a real browser: user-, vessel- and consignment-service and
# api-gateway started from their binaries (static addresses, fresh
# databases), then headless Chromium (Debian's chromium + chromium-driver)
# driven by Python Selenium (scripts/smoke/browser.py): sign up, log in,
# ship a consignment with two containers, see it listed with its vessel, see
# a bad input's error, log out, an admin's fleet, and the admin's ops
# dashboard showing consignment-service's circuit open while it is stopped
# (SIGSTOP) and closed again after SIGCONT. Prints one "ok - …" /
# "not ok - …" line per check; screenshots in $BROWSER_OUT (default:
# target/browser).
#
# Needs TEST_DATABASE_URL and TEST_NATS_URL (scripts/infra.sh up).
set -uo pipefail
cd "$(dirname "$0")/../.."

if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    { apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }; } >&2 ||
        { echo "not ok - browser: install chromium and chromium-driver (apt-get)"; exit 1; }
fi
python3 -c 'import selenium' 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check selenium >&2 ||
    { echo "not ok - browser: install Python selenium from PyPI"; exit 1; }

bin=${CARGO_TARGET_DIR:-target}/debug
for name in user-service vessel-service consignment-service api-gateway; do
    [ -x "$bin/$name" ] || cargo build --quiet --locked -p "$name" >&2
done
out=${BROWSER_OUT:-${CARGO_TARGET_DIR:-target}/browser}
run=$(mktemp -d)
mkdir -p "$out"
spare_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
base=${TEST_DATABASE_URL%/*}
for db in users vessels consignments; do
    psql -q "$TEST_DATABASE_URL" -c "CREATE DATABASE browser_${db}_$$" >/dev/null
done
user_port=$(spare_port) vessel_port=$(spare_port) consignment_port=$(spare_port) gateway_port=$(spare_port)
pids=()
start() { # NAME PORT ENV...
    local name=$1 port=$2
    shift 2
    env LISTEN_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$(spare_port)" RUST_LOG=info "$@" \
        "$bin/$name" >"$run/$name.log" 2>&1 &
    pids+=($!)
}
stop() {
    local pid
    # A process left stopped (SIGSTOP) takes SIGTERM only once continued.
    for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    rm -rf "$run"
}
trap stop EXIT

admin="admin-$$@example.com"
start user-service "$user_port" DATABASE_URL="$base/browser_users_$$" NATS_URL="$TEST_NATS_URL" \
    BCRYPT_COST=4 ADMIN_EMAILS="$admin" USER_EVENTS_STREAM="BROWSER_$$" USER_CREATED_SUBJECT="browser.$$.user.created"
service_token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
start vessel-service "$vessel_port" DATABASE_URL="$base/browser_vessels_$$" USER_SERVICE_URL="http://127.0.0.1:$user_port" \
    SERVICE_TOKEN="$service_token"
start consignment-service "$consignment_port" DATABASE_URL="$base/browser_consignments_$$" \
    USER_SERVICE_URL="http://127.0.0.1:$user_port" VESSEL_SERVICE_URL="http://127.0.0.1:$vessel_port" \
    SERVICE_TOKEN="$service_token"
consignment_pid=${pids[-1]}
# A short deadline for consignment-service, so the dashboard check sees its
# circuit open within seconds of stopping it; a cool-down long enough that
# the page (refreshing every 2 s) sees it open before it half-opens.
start api-gateway "$gateway_port" USER_SERVICE_URL="http://127.0.0.1:$user_port" \
    VESSEL_SERVICE_URL="http://127.0.0.1:$vessel_port" CONSIGNMENT_SERVICE_URL="http://127.0.0.1:$consignment_port" \
    CONSIGNMENT_SERVICE_TIMEOUT=2s BREAKER_FAILURES=2 BREAKER_COOL_DOWN=8s

url=http://127.0.0.1:$gateway_port
for _ in $(seq 300); do
    curl -fs "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
if ! curl -fs "$url/readyz" >/dev/null; then
    echo "not ok - browser: the gateway and services became ready: $(curl -s "$url/readyz")"
    tail -n 5 "$run"/*.log
    exit 1
fi
echo "ok - browser: api-gateway is ready at $url (services from their binaries)"
CONSIGNMENT_PID=$consignment_pid python3 scripts/smoke/browser.py "$url" "$out" "$admin"
status=$?
echo "browser: screenshots in $out" >&2
exit $status
