#!/bin/bash
# Starts PostgreSQL 18 (documentdb) on loopback and the gateway on 0.0.0.0:27017;
# MONGO_INITDB_ROOT_USERNAME/PASSWORD become the login (documentdb_admin_role).
set -euo pipefail
if [ "${1:-}" != mongod ]; then exec "$@"; fi
PGBIN=/usr/lib/postgresql/18/bin PGDATA=/var/lib/documentdb/data PGPORT=5432
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }
install -d -o postgres -g postgres -m 2775 /var/run/postgresql
rm -f "$PGDATA/postmaster.pid"
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l /var/lib/documentdb/postgres.log -w -t 120 -o "-p $PGPORT" start >/dev/null
user=${MONGO_INITDB_ROOT_USERNAME:-} password=${MONGO_INITDB_ROOT_PASSWORD:-}
if [ -z "$user" ] || [ -z "$password" ]; then
    echo "stand-in for mongo:7: set MONGO_INITDB_ROOT_USERNAME and MONGO_INITDB_ROOT_PASSWORD (DocumentDB always requires a login)" >&2
    exit 1
fi
[[ $user =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || { echo "MONGO_INITDB_ROOT_USERNAME must be a plain identifier" >&2; exit 1; }
as_pg "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -p "$PGPORT" -U postgres -d postgres \
    -v user="$user" -v password="$password" >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS documentdb CASCADE;
UPDATE cron.job SET nodeport = current_setting('port')::int
    WHERE nodeport IS DISTINCT FROM current_setting('port')::int;
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') AS missing \gset
\if :missing
CREATE ROLE :"user" WITH LOGIN INHERIT IN ROLE documentdb_admin_role;
\endif
ALTER ROLE :"user" WITH LOGIN CREATEROLE PASSWORD :'password';
GRANT :"user" TO postgres WITH ADMIN OPTION;
SQL
cat >/etc/documentdb/gateway.json <<JSON
{
  "NodeHostName": "localhost",
  "BlockedRolePrefixes": [ "documentdb", "citus", "pg", "internal_role" ],
  "PostgresSystemUser": "postgres",
  "PostgresHostName": "127.0.0.1",
  "PostgresPort": $PGPORT,
  "PostgresDatabase": "postgres",
  "GatewayListenPort": 27017,
  "UseLocalHost": false,
  "TransactionTimeoutSecs": 30,
  "CursorTimeoutSecs": 60,
  "PostgresCommandTimeoutSecs": 30,
  "EnforceSslTcp": false,
  "CertificateOptions": { "CertType": "pem_file", "FilePath": "/etc/documentdb/cert.pem", "KeyFilePath": "/etc/documentdb/key.pem" }
}
JSON
stop() {
    kill -TERM "$gateway" 2>/dev/null || true
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null || true
    exit 0
}
trap stop TERM INT
as_pg /usr/local/bin/documentdb_gateway /etc/documentdb/gateway.json &
gateway=$!
echo "stand-in mongo:7 (DocumentDB) listening on 27017"
wait "$gateway"
