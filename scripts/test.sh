#!/usr/bin/env bash
# Every test of the workspace against throwaway infrastructure: starts
# PostgreSQL, NATS (JetStream), Consul and a MongoDB-compatible server on
# loopback (scripts/infra.sh), runs the tests, and stops them again, whatever
# happened.
#
# No genuine mongod installs on these machines: MongoDB tests run against the
# DocumentDB stand-in (shared/tools/documentdb) that infra.sh starts, or the
# server TEST_MONGODB_URL names. They are marked ignored for a plain
# `cargo test`; here they are included whenever a server runs, and reported
# as SKIPPED, loudly, only when none could be had.
set -euo pipefail
cd "$(dirname "$0")/.."

export SHIPPY_INFRA_DIR=${SHIPPY_INFRA_DIR:-$PWD/.infra/test-$$}
cleanup() { scripts/infra.sh down >/dev/null 2>&1 || true; rm -rf "$SHIPPY_INFRA_DIR"; }
trap cleanup EXIT
eval "$(scripts/infra.sh up postgres nats consul mongodb)"

# The committed sqlx offline query data must match the queries and schema.
scripts/sqlx-prepare.sh --check

extra=()
if [ -n "${TEST_MONGODB_URL:-}" ]; then
    echo "MongoDB: the MongoDB tests run too (against ${TEST_MONGODB_URL##*@})"
    extra=(-- --include-ignored)
fi

log=$SHIPPY_INFRA_DIR/cargo-test.log
mkdir -p "$SHIPPY_INFRA_DIR"
status=0
cargo test --workspace --locked --no-fail-fast "${extra[@]}" 2>&1 | tee "$log" || status=$?

# The binary as a new user runs it, probed by an independent gRPC client.
echo
echo "smoke: vessel-service with an independent client (Python grpcio + reflection)"
cargo dev smoke vessel 2>&1 | tee -a "$log.smoke" || status=1

# The web UI in headless Chromium (Debian's package), through api-gateway.
echo
echo "browser: the web UI in headless Chromium (Selenium), screenshots in ${CARGO_TARGET_DIR:-target}/browser"
BROWSER_OUT=${CARGO_TARGET_DIR:-target}/browser cargo dev smoke browser 2>&1 | tee -a "$log.smoke" || status=1

# The gateway's OpenAPI document against the gateway (Schemathesis, PyPI).
echo
echo "openapi: Schemathesis fuzzes api-gateway against /api/openapi.json, report in ${CARGO_TARGET_DIR:-target}/openapi"
OPENAPI_OUT=${CARGO_TARGET_DIR:-target}/openapi cargo dev smoke openapi 2>&1 | tee -a "$log.smoke" || status=1

# No Docker engine here: check the compose file against the binaries instead.
echo
echo "compose: docker-compose.yml against the binaries' --help"
python3 scripts/check_compose.py "${CARGO_TARGET_DIR:-target}/debug" 2>&1 | tee -a "$log.smoke" || status=1

# No kubelet here either: render the Kubernetes manifests and check them.
echo
echo "kubernetes: deploy/kubernetes rendered, schema-validated and checked against the binaries"
cargo dev k8s check "${CARGO_TARGET_DIR:-target}/debug" 2>&1 | tee -a "$log.smoke" || status=1

if [ -z "${TEST_MONGODB_URL:-}" ]; then
    echo
    echo "NOTE: no MongoDB server could be had, so the MongoDB tests were SKIPPED (shown as ignored above)."
    echo "      Set TEST_MONGODB_URL=mongodb://user:password@host:port/ to run them against a MongoDB server."
fi

# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
     /^ok - / { p++ } /^not ok - / { f++ }
     END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log" "$log.smoke"
exit "$status"
