#!/usr/bin/env bash
# make chaos: the whole cluster natively on throwaway infrastructure of its
# own (scripts/infra.sh: PostgreSQL, NATS, Consul; the MongoDB stand-in with
# STORE=mongodb), mixed load and seeded random faults for CHAOS_DURATION
# (default 5m), then the checker. The history, the services' logs and the
# report (report.md, report.json, throughput.svg) go to CHAOS_OUT (default
# target/chaos/<store>-<time>). Exits non-zero on any violation.
#
#   make chaos                                  5 minutes on PostgreSQL, a random seed
#   make chaos CHAOS_SEED=42 CHAOS_DURATION=30m STORE=mongodb
set -euo pipefail
cd "$(dirname "$0")/.."

store=${STORE:-postgres}
export STORE=$store
export SHIPPY_INFRA_DIR=${SHIPPY_INFRA_DIR:-$PWD/.infra/chaos-$$}
cleanup() { scripts/infra.sh down >/dev/null 2>&1 || true; rm -rf "$SHIPPY_INFRA_DIR"; }
trap cleanup EXIT
services=(postgres nats consul)
if [ "$store" = mongodb ]; then services+=(mongodb); fi
eval "$(scripts/infra.sh up "${services[@]}")"
if [ "$store" = mongodb ] && [ -z "${TEST_MONGODB_URL:-}" ]; then
    echo "chaos: STORE=mongodb needs a MongoDB server, and none could be had (set TEST_MONGODB_URL)" >&2
    exit 2
fi
# The services register with a Consul agent of the run's own and find each
# other through it (the nemesis kills and pauses it too); CHAOS_CONSUL=0: not.
export CHAOS_CONSUL=${CHAOS_CONSUL:-1}
# PostgreSQL's backends are paused only on the server started just now.
if [ -z "${CHAOS_PAUSE_POSTGRES:-}" ]; then
    if [ -e "$SHIPPY_INFRA_DIR/postgres.dir" ]; then export CHAOS_PAUSE_POSTGRES=1; else export CHAOS_PAUSE_POSTGRES=0; fi
fi

cargo build --locked -p shippy-chaos -p user-service -p vessel-service -p consignment-service \
    -p email-service -p api-gateway --bins
export CHAOS_OUT=${CHAOS_OUT:-${CARGO_TARGET_DIR:-target}/chaos/$store-$(date -u +%Y%m%dT%H%M%SZ)}
"${CARGO_TARGET_DIR:-target}/debug/shippy-chaos"
