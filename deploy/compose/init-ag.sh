#!/usr/bin/env bash
# The ag-init service of docker-compose.yml: builds the read-scale
# availability group between sql-primary and sql-secondary with the sqlcmd
# scripts beside this file, then waits until the secondary serves the
# database. Runs in the SQL Server image (which has sqlcmd) once both
# servers are healthy; every script is guarded, so a re-run is harmless.
#
# Environment (from .env, see .env.example): MSSQL_SA_PASSWORD,
# SLUICE_BACKEND_PASSWORD, AG_MASTER_KEY_PASSWORD, AG_CERT_PASSWORD.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"

# Names shared with docker-compose.yml (hostnames) and proxy.toml
# (addresses, user, database); tests/deploy.rs checks that they agree.
PRIMARY_HOST=sql-primary
SECONDARY_HOST=sql-secondary
ENDPOINT_PORT=5022
AG_NAME=sluice_ag
DATABASE=app
SLUICE_LOGIN=sluice
# Fixed, so the login has the same SID on both servers and the database
# user (replicated with the database) maps to it on the secondary too.
SLUICE_LOGIN_SID=0x5C1D1CE05C1D1CE05C1D1CE05C1D1CE0

SQLCMD=""
for candidate in /opt/mssql-tools18/bin/sqlcmd /opt/mssql-tools/bin/sqlcmd; do
  if [[ -x "$candidate" ]]; then
    SQLCMD="$candidate"
    break
  fi
done
if [[ -z "$SQLCMD" ]]; then
  echo "init-ag: no sqlcmd in this image (looked in /opt/mssql-tools18 and /opt/mssql-tools)" >&2
  exit 1
fi

# sqlcmd on SERVER with SCRIPT; the rest are -v NAME=value pairs. -b stops
# at the first error; -C trusts the servers' self-signed certificates.
run() {
  local server="$1" script="$2"
  shift 2
  local vars=()
  for pair in "$@"; do
    vars+=(-v "$pair")
  done
  "$SQLCMD" -C -b -S "$server" -U sa -P "$MSSQL_SA_PASSWORD" -h -1 -i "$HERE/$script" "${vars[@]}"
}

echo "init-ag: primary ($PRIMARY_HOST)"
run "$PRIMARY_HOST" 01-primary.sql \
  "AG_MASTER_KEY_PASSWORD=$AG_MASTER_KEY_PASSWORD" \
  "ENDPOINT_PORT=$ENDPOINT_PORT" \
  "SLUICE_LOGIN=$SLUICE_LOGIN" \
  "SLUICE_BACKEND_PASSWORD=$SLUICE_BACKEND_PASSWORD" \
  "SLUICE_LOGIN_SID=$SLUICE_LOGIN_SID" \
  "AG_NAME=$AG_NAME" \
  "PRIMARY_HOST=$PRIMARY_HOST" \
  "SECONDARY_HOST=$SECONDARY_HOST" \
  "DATABASE=$DATABASE"

echo "init-ag: copying the endpoint certificate to the secondary"
exported="$(run "$PRIMARY_HOST" 02-export-certificate.sql "AG_CERT_PASSWORD=$AG_CERT_PASSWORD")"
certificate="$(awk '$1 == "CERTIFICATE" { print $2 }' <<<"$exported")"
private_key="$(awk '$1 == "PRIVATE_KEY" { print $2 }' <<<"$exported")"
for value in "$certificate" "$private_key"; do
  if [[ ! "$value" =~ ^0x[0-9A-Fa-f]+$ ]]; then
    echo "init-ag: 02-export-certificate.sql printed no certificate and key:" >&2
    echo "$exported" >&2
    exit 1
  fi
done

echo "init-ag: secondary ($SECONDARY_HOST)"
run "$SECONDARY_HOST" 03-secondary.sql \
  "AG_MASTER_KEY_PASSWORD=$AG_MASTER_KEY_PASSWORD" \
  "CERTIFICATE_BINARY=$certificate" \
  "PRIVATE_KEY_BINARY=$private_key" \
  "AG_CERT_PASSWORD=$AG_CERT_PASSWORD" \
  "ENDPOINT_PORT=$ENDPOINT_PORT" \
  "SLUICE_LOGIN=$SLUICE_LOGIN" \
  "SLUICE_BACKEND_PASSWORD=$SLUICE_BACKEND_PASSWORD" \
  "SLUICE_LOGIN_SID=$SLUICE_LOGIN_SID" \
  "AG_NAME=$AG_NAME"

echo "init-ag: adding $DATABASE to $AG_NAME"
run "$PRIMARY_HOST" 04-add-database.sql "AG_NAME=$AG_NAME" "DATABASE=$DATABASE"

echo "init-ag: waiting for $DATABASE on the secondary"
for _ in $(seq 1 90); do
  ready="$(run "$SECONDARY_HOST" 05-secondary-ready.sql "DATABASE=$DATABASE" | tr -d '[:space:]')"
  if [[ "$ready" == 1 ]]; then
    echo "init-ag: done; $SECONDARY_HOST serves $DATABASE read-only"
    exit 0
  fi
  sleep 2
done
echo "init-ag: $DATABASE did not come online on $SECONDARY_HOST within 3 minutes" >&2
exit 1
