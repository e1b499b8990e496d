#!/usr/bin/env bash
# A new user's check of vessel-service: the real binary, started as a user
# would (`DATABASE_URL=postgres://… vessel-service`), probed by an
# independent client (Python grpcio, scripts/smoke/grpc_probe.py) that learns
# the API through reflection alone. Prints one "ok - …" or "not ok - …"
# line per check; exits non-zero if any failed.
#
# Needs TEST_DATABASE_URL (scripts/infra.sh up) and a built vessel-service.
set -uo pipefail
cd "$(dirname "$0")/../.."

python3 -c 'import grpc, grpc_reflection, grpc_health' 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check grpcio grpcio-reflection grpcio-health-checking >&2 ||
    { echo "not ok - install the Python gRPC client (grpcio) from PyPI"; exit 1; }

binary=${VESSEL_SERVICE_BIN:-${CARGO_TARGET_DIR:-target}/debug/vessel-service}
[ -x "$binary" ] || cargo build --quiet -p vessel-service >&2
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
database=${TEST_DATABASE_URL%/*}/smoke_vessels_$$
# A password in the URL (the loopback server trusts any), to check it is never logged.
[[ $database == *://*:*@* ]] || database=${database/@/:hunter2@}
psql -q "$TEST_DATABASE_URL" -c "CREATE DATABASE smoke_vessels_$$" >/dev/null

log=$(mktemp)
DATABASE_URL=$database LISTEN_ADDR=127.0.0.1:$port RUST_LOG=info "$binary" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT

probe() { python3 scripts/smoke/grpc_probe.py "127.0.0.1:$port" "$@" 2>&1; }
failed=0
check() { # check NAME EXPECTED-SUBSTRING ACTUAL
    if [[ $3 == *"$2"* ]]; then echo "ok - $1"; else echo "not ok - $1: wanted '$2', got '$3'"; failed=1; fi
}

for _ in $(seq 100); do
    [ "$(probe health 2>/dev/null)" = SERVING ] && break
    kill -0 $pid 2>/dev/null || { echo "not ok - vessel-service exited at start:"; cat "$log"; exit 1; }
    sleep 0.1
done
check "health answers SERVING" SERVING "$(probe health)"
check "health of the named service" SERVING "$(probe health shippy.vessel.v1.VesselService)"
check "reflection lists VesselService" shippy.vessel.v1.VesselService "$(probe list)"
check "FindAvailable picks the smallest seed vessel that fits" '"id": "vessel002"' \
    "$(probe call shippy.vessel.v1.VesselService/FindAvailable '{"capacity": 3, "maxWeight": 55000}')"
check "nothing fits: NOT_FOUND naming the spec" "ERROR NOT_FOUND no available vessel has capacity >= 3000" \
    "$(probe call shippy.vessel.v1.VesselService/FindAvailable '{"capacity": 3000, "maxWeight": 1}')"
check "capacity 0: INVALID_ARGUMENT" "ERROR INVALID_ARGUMENT capacity must be greater than 0" \
    "$(probe call shippy.vessel.v1.VesselService/FindAvailable '{"capacity": 0, "maxWeight": 1}')"
# Creating vessels is for admins (a token from user-service, which this
# smoke test does not run): an outsider without one is refused, and says how.
check "Create without a token: UNAUTHENTICATED, saying what to send" \
    "ERROR UNAUTHENTICATED missing token: send \`authorization: Bearer <token>\`" \
    "$(probe call shippy.vessel.v1.VesselService/Create '{"name": "Smoke", "capacity": 1, "maxWeight": 1}')"
check "still serving after refused and bad input; nothing was created" '"id": "vessel002"' \
    "$(probe call shippy.vessel.v1.VesselService/FindAvailable '{"capacity": 1, "maxWeight": 1}')"

kill -TERM $pid
wait $pid
check "SIGTERM: graceful shutdown, exit 0" "exit 0" "exit $?"
leaks=$(grep -c hunter2 "$log")
if [ "$leaks" = 0 ] && grep -q "vessel store configured" "$log"; then
    echo "ok - the log never shows the database password"
else
    echo "not ok - the database password appears in $leaks log lines"; failed=1
fi
[ $failed = 0 ] || { echo "--- vessel-service log:"; cat "$log"; }
exit $failed
