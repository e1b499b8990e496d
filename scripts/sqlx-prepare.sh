#!/usr/bin/env bash
# sqlx's offline query data (user-service/.sqlx): regenerate it, or check it
# is current, against a fresh database migrated from user-service/migrations.
#
#   scripts/sqlx-prepare.sh          regenerate (commit the result)
#   scripts/sqlx-prepare.sh --check  fail if it is stale
#
# Needs TEST_DATABASE_URL (scripts/infra.sh up) and sqlx-cli 0.9, which it
# installs with cargo when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo sqlx --version 2>/dev/null | grep -q ' 0\.9\.'; then
    echo "installing sqlx-cli 0.9 (once)" >&2
    cargo install sqlx-cli --version 0.9.0 --no-default-features --features postgres,rustls --quiet
fi
: "${TEST_DATABASE_URL:?start the infrastructure first: eval \"\$(scripts/infra.sh up postgres)\"}"

name=sqlx_prepare_$$
psql -q "$TEST_DATABASE_URL" -c "CREATE DATABASE $name" >/dev/null
trap 'psql -q "$TEST_DATABASE_URL" -c "DROP DATABASE IF EXISTS $name" >/dev/null 2>&1 || true' EXIT
database=${TEST_DATABASE_URL%/*}/$name
sqlx migrate run --source user-service/migrations --database-url "$database" >/dev/null
cd user-service
SQLX_OFFLINE=false DATABASE_URL=$database cargo sqlx prepare "$@"
