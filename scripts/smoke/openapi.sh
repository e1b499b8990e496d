#!/usr/bin/env bash
# The api-gateway's OpenAPI document against the gateway itself: user-,
# vessel- and consignment-service and api-gateway started from their
# binaries (static addresses, fresh databases, rate limits out of the way),
# an admin signed up and logged in, then Schemathesis (PyPI, a pinned
# version in a virtualenv cached outside the clone) fuzzes every operation
# of /api/openapi.json with the admin's token (examples, coverage, fuzzing,
# and stateful sequences along the links it infers, e.g. a created
# consignment's id into its cancel): no 5xx, every answer's
# status, content type and body as documented, requests valid by the
# document accepted and invalid ones refused. Prints "ok - …" /
# "not ok - …" lines; the report (JUnit, and the failures' reproductions)
# in $OPENAPI_OUT (default: target/openapi).
#
# After the run, it also fails unless all 9 operations were tested and the
# gateway's own metrics show the protected routes succeeding (POST
# /api/v1/vessels 201, POST /api/v1/consignments 201, DELETE
# /api/v1/consignments/{id} 200, GET /api/v1/me 200, GET /api/v1/ops 200):
# a run that only met 401s or 403s behind the bearer and admin checks
# exercised nothing.
#
# OPENAPI_MAX_EXAMPLES (default 200): test cases per operation and phase.
# OPENAPI_SEED: the run's seed (default 1, the same cases every run;
# "random" for a new one), printed in the ok/not ok line to replay it.
# OPENAPI_ADMIN: the address the fuzz run signs up and logs in with
# (default: one of ADMIN_EMAILS); another one is no admin, so the admin's
# routes are refused and the run fails (to see the post-run check work).
# OPENAPI_SCHEMA=file: fuzz against that document instead of the served
# one (to see a wrong document fail the run).
# Arguments are passed on to `schemathesis run` (e.g. --mode negative).
#
# Needs TEST_DATABASE_URL and TEST_NATS_URL (scripts/infra.sh up).
set -uo pipefail
cd "$(dirname "$0")/../.."

# Schemathesis and all it needs at the versions of openapi-requirements.txt,
# in a virtualenv cached outside the clone under the hash of that file and
# of the Python that runs it (another list or Python: another venv).
requirements=scripts/smoke/openapi-requirements.txt
version=$(sed -n 's/^schemathesis==//p' "$requirements")
key=$({ cat "$requirements"; python3 --version; } | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/shippy-rs
venv=$cache/schemathesis-venv-$key
# A venv cannot move (its scripts name its path): made in place, and marked
# complete last, so an interrupted install is made again.
if ! [ -f "$venv/installed" ] || ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
    mkdir -p "$cache"
    rm -rf "$venv"
    # Debian's python3 makes no venv (no ensurepip) without python3-venv.
    if ! python3 -m venv "$venv" >&2; then
        rm -rf "$venv"
        { apt-get install -y -q python3-venv || { apt-get update -q && apt-get install -y -q python3-venv; }; } >&2 ||
            { echo "not ok - openapi: install python3-venv (apt-get) for python3 -m venv"; exit 1; }
        python3 -m venv "$venv" >&2 || { echo "not ok - openapi: python3 -m venv $venv"; exit 1; }
    fi
    { "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" &&
        "$venv/bin/python" -m pip check && cp "$requirements" "$venv/installed"; } >&2 ||
        { echo "not ok - openapi: install $requirements from PyPI into $venv"; exit 1; }
fi

# Cheap when the binaries are fresh, and never a stale one fuzzed.
bin=${CARGO_TARGET_DIR:-target}/debug
cargo build --quiet --locked -p user-service -p vessel-service -p consignment-service -p api-gateway >&2 ||
    { echo "not ok - openapi: cargo build the services and api-gateway"; exit 1; }
out=${OPENAPI_OUT:-${CARGO_TARGET_DIR:-target}/openapi}
rm -rf "$out"
mkdir -p "$out"
run=$(mktemp -d)
# Nothing written into the clone: Hypothesis's examples database and
# Python's bytecode of the hooks stay out of it.
export HYPOTHESIS_STORAGE_DIRECTORY=$run/hypothesis PYTHONDONTWRITEBYTECODE=1
spare_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
base=${TEST_DATABASE_URL%/*}
for db in users vessels consignments; do
    psql -q "$TEST_DATABASE_URL" -c "CREATE DATABASE openapi_${db}_$$" >/dev/null ||
        { echo "not ok - openapi: create database openapi_${db}_$$ at TEST_DATABASE_URL"; rm -rf "$run"; exit 1; }
done
user_port=$(spare_port) vessel_port=$(spare_port) consignment_port=$(spare_port) gateway_port=$(spare_port)
pids=()
gateway_metrics_port=$(spare_port)
start() { # NAME PORT ENV...
    local name=$1 port=$2 metrics
    shift 2
    metrics=$(spare_port)
    [ "$name" = api-gateway ] && metrics=$gateway_metrics_port
    env LISTEN_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$metrics" RUST_LOG=warn "$@" \
        "$bin/$name" >"$run/$name.log" 2>&1 &
    pids+=($!)
}
stop() {
    local pid db
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
    cp "$run"/*.log "$out/" 2>/dev/null
    rm -rf "$run"
    for db in users vessels consignments; do
        psql -q "$TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS openapi_${db}_$$ WITH (FORCE)" >/dev/null 2>&1
    done
}
trap stop EXIT

# The fuzzer sends thousands of requests from one address, and logs in with
# made-up passwords: every limit is raised far above that (the defaults are
# tested by the gateway's and user-service's own tests).
admin="admin-$$@example.com"
start user-service "$user_port" DATABASE_URL="$base/openapi_users_$$" NATS_URL="$TEST_NATS_URL" \
    BCRYPT_COST=4 ADMIN_EMAILS="$admin" USER_EVENTS_STREAM="OPENAPI_$$" USER_CREATED_SUBJECT="openapi.$$.user.created" \
    LOGIN_MAX_FAILURES=1000000 LOGIN_MAX_FAILURES_PER_ADDRESS=1000000
service_token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
start vessel-service "$vessel_port" DATABASE_URL="$base/openapi_vessels_$$" USER_SERVICE_URL="http://127.0.0.1:$user_port" \
    SERVICE_TOKEN="$service_token" ACCOUNT_MAX_CONTAINERS=2000000000 ACCOUNT_MAX_WEIGHT=2000000000
start consignment-service "$consignment_port" DATABASE_URL="$base/openapi_consignments_$$" \
    USER_SERVICE_URL="http://127.0.0.1:$user_port" VESSEL_SERVICE_URL="http://127.0.0.1:$vessel_port" \
    SERVICE_TOKEN="$service_token"
start api-gateway "$gateway_port" USER_SERVICE_URL="http://127.0.0.1:$user_port" \
    VESSEL_SERVICE_URL="http://127.0.0.1:$vessel_port" CONSIGNMENT_SERVICE_URL="http://127.0.0.1:$consignment_port" \
    RATE_LIMIT_PER_SECOND=100000 RATE_LIMIT_BURST=100000 \
    LOGIN_RATE_LIMIT_PER_SECOND=100000 LOGIN_RATE_LIMIT_BURST=100000

url=http://127.0.0.1:$gateway_port
for _ in $(seq 600); do
    curl -fs "$url/readyz" >/dev/null 2>&1 && break
    sleep 0.1
done
if ! curl -fs "$url/readyz" >/dev/null; then
    echo "not ok - openapi: the gateway and services became ready: $(curl -s "$url/readyz")"
    tail -n 5 "$run"/*.log >&2
    exit 1
fi

password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
fuzzer=${OPENAPI_ADMIN:-$admin}
curl -fs -X POST "$url/api/v1/users" -H 'content-type: application/json' \
    -d "{\"name\": \"Fuzz Admin\", \"email\": \"$fuzzer\", \"password\": \"$password\"}" >/dev/null
token=$(curl -fs -X POST "$url/api/v1/login" -H 'content-type: application/json' \
    -d "{\"email\": \"$fuzzer\", \"password\": \"$password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' 2>/dev/null)
if [ -z "$token" ]; then
    echo "not ok - openapi: an admin signs up and logs in through the gateway"
    exit 1
fi
echo "ok - openapi: api-gateway is ready at $url (services from their binaries), $fuzzer logged in"

schema=${OPENAPI_SCHEMA:-$url/api/openapi.json}
# The sign-up address pattern as Python (Hypothesis) reads it: a dot-atom
# with any number of dots and at most 64 characters before the @.
if ! curl -fs "$schema" -o "$run/document.json" 2>/dev/null; then cp "$schema" "$run/document.json"; fi
if ! python3 - "$run/document.json" <<'PY' >&2; then
import json, re, sys
schemas = json.load(open(sys.argv[1]))["components"]["schemas"]
pattern = re.compile(schemas["NewUser"]["properties"]["email"]["pattern"])
for good in ["john.q.public@example.com", "a.b.c.d@mail.example.co.uk", "x" * 64 + "@example.com"]:
    assert pattern.search(good), f"sign-up pattern refuses {good}"
for bad in ["x" * 65 + "@example.com", "a..b@example.com", ".a@example.com", "a.@example.com", '"q"@example.com']:
    assert not pattern.search(bad), f"sign-up pattern takes {bad}"
PY
    echo "not ok - openapi: the document's sign-up email pattern is a dot-atom of at most 64 characters"
    exit 1
fi
echo "ok - openapi: the document's sign-up email pattern takes dot-atoms of up to 64 characters (Python re)"

case ${OPENAPI_SEED:-1} in
random) seed=$(python3 -c 'import secrets; print(secrets.randbelow(2**31))') ;;
*) seed=${OPENAPI_SEED:-1} ;;
esac
started=$(date +%s)
PYTHONPATH=scripts/smoke SCHEMATHESIS_HOOKS=openapi_hooks \
    timeout 900 "$venv/bin/schemathesis" --config-file scripts/smoke/openapi.toml run "$schema" \
    --url "$url" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance,negative_data_rejection \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${OPENAPI_MAX_EXAMPLES:-200}" \
    --seed "$seed" \
    --workers 2 \
    --request-timeout 10 \
    --generation-database none \
    --no-color --output-sanitize false \
    --report junit --report-dir "$out" "$@" >"$out/schemathesis.log" 2>&1
status=$?
[ "$status" -eq 124 ] && echo "openapi: schemathesis did not finish in 900 s" >&2
took=$(($(date +%s) - started))
# The run's summary (and, on failure, each failure with its curl to
# reproduce it) for the log.
sed -n '/SUMMARY/,$p' "$out/schemathesis.log" | head -n 200 >&2
[ "$status" -eq 0 ] || sed -n '/FAILURES/,/SUMMARY/p' "$out/schemathesis.log" | head -n 300 >&2
# What the gateway answered, by route and status (its own metrics): the
# fuzz reached the services, not only the edge's refusals.
curl -fs "http://127.0.0.1:$gateway_metrics_port/metrics" |
    sed -n 's/^http_server_requests_total{method="\([A-Z]*\)",route="\([^"]*\)",status="\([0-9]*\)"} \([0-9]*\)$/\1 \2 \3: \4/p' |
    sort >"$out/statuses.txt"
echo "openapi: the gateway's answers during the run (method route status: count):" >&2
sed 's/^/    /' "$out/statuses.txt" >&2
operations=$(sed -n 's/^ *Tested: \([0-9]*\).*/\1/p' "$out/schemathesis.log" | head -n 1)
cases=$(sed -n 's/^ *\([0-9]* generated.*\)/\1/p' "$out/schemathesis.log" | head -n 1)
summary="${operations:-?} operations, ${cases:-no test cases}, seed $seed"
if [ "$status" -eq 0 ]; then
    echo "ok - openapi: schemathesis $version found the gateway as its document says (${took}s; $summary)"
else
    echo "not ok - openapi: schemathesis $version found the gateway not as its document says (exit $status, ${took}s; $summary; see $out/schemathesis.log)"
fi
# The fuzz reached behind the bearer check and the admin check: each
# protected route succeeded at least once, and every operation was tested.
missing=()
for success in "POST /api/v1/vessels 201" "POST /api/v1/consignments 201" \
    "DELETE /api/v1/consignments/{id} 200" "GET /api/v1/me 200" "GET /api/v1/ops 200"; do
    grep -qF "$success: " "$out/statuses.txt" || missing+=("$success")
done
if [ "${operations:-0}" -ne 9 ]; then
    missing+=("all 9 operations tested (${operations:-none})")
fi
if [ "${#missing[@]}" -eq 0 ]; then
    echo "ok - openapi: the fuzz run reached every operation and the protected routes succeeded (seed $seed)"
else
    echo "not ok - openapi: the fuzz run reached every operation and the protected routes succeeded (seed $seed); missing: $(printf '%s; ' "${missing[@]}")see $out/statuses.txt"
    status=1
fi
exit "$status"
