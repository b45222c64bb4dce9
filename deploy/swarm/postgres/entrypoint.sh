#!/bin/sh
# First start: a cluster owned by POSTGRES_USER with the password in POSTGRES_PASSWORD_FILE
# (a Docker secret) or POSTGRES_PASSWORD, and database POSTGRES_DB; local connections
# (docker exec ... psql) are trusted, network ones need the password. Then run the server.
set -eu
user="${POSTGRES_USER:-framebroker}"
db="${POSTGRES_DB:-framebroker}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw="$(mktemp)"
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then cat "$POSTGRES_PASSWORD_FILE" > "$pw"; else
    printf '%s' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE}" > "$pw"; fi
  initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  psql -U "$user" -d postgres -h /run/postgresql -v ON_ERROR_STOP=1 -q \
    -c "CREATE DATABASE \"$db\""
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
