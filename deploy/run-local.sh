#!/usr/bin/env bash
# Runs the service on this machine with a PostgreSQL cluster of its own under .data/ (kept between
# runs) and emails written as .eml files to ./outbox. Extra arguments go to the service, e.g.
#   deploy/run-local.sh --Digest:MaxPapers=5
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
data="$repo/.data"
cluster="$data/postgres"
port="${SUBSCRIPTIONS_PG_PORT:-54329}"

find_pg_bin() {
  if command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x "$dir/pg_ctl" ]] && { echo "$dir"; return; }
  done
  echo "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install PostgreSQL 15 or later." >&2
  exit 1
}
pg_bin="$(find_pg_bin)"

# PostgreSQL refuses to run as root: run it as the postgres user then.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

mkdir -p "$cluster/run"
if [[ "$(id -u)" == 0 ]]; then
  id postgres >/dev/null 2>&1 || { echo "Running as root needs a 'postgres' user to run PostgreSQL as." >&2; exit 1; }
  chown -R postgres:postgres "$cluster"
  if ! runuser -u postgres -- test -x "$cluster"; then
    echo "The postgres user cannot reach $cluster: make the folders above it traversable (chmod o+x)." >&2
    exit 1
  fi
fi

if [[ ! -f "$cluster/data/PG_VERSION" ]]; then
  echo "Creating a PostgreSQL cluster in $cluster/data"
  as_pg "$pg_bin/initdb" -D "$cluster/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
  echo "CREATE DATABASE subscriptions" | as_pg "$pg_bin/postgres" --single -D "$cluster/data" postgres >/dev/null 2>&1
fi

started_here=0
if ! as_pg "$pg_bin/pg_ctl" -D "$cluster/data" status >/dev/null 2>&1; then
  as_pg "$pg_bin/pg_ctl" -D "$cluster/data" -l "$cluster/postgres.log" -w \
    -o "-p $port -k $cluster/run -c listen_addresses=''" start >/dev/null
  started_here=1
fi
stop_postgres() {
  if [[ "$started_here" == 1 ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$cluster/data" -m fast stop >/dev/null || true
  fi
}
trap stop_postgres EXIT

if [[ ! -s "$data/token-secret" ]]; then
  (umask 077 && head -c 32 /dev/urandom | base64 >"$data/token-secret")
fi

export ConnectionStrings__Postgres="Host=$cluster/run;Port=$port;Username=postgres;Database=subscriptions"
export App__TokenSecret="${App__TokenSecret:-$(cat "$data/token-secret")}"
export Mail__PickupDirectory="${Mail__PickupDirectory:-$repo/outbox}"
# The garbage collector's first generation, as in the image (hexadecimal, 16 MB): docs/operations.md, "Runtime settings".
export DOTNET_GCgen0size="${DOTNET_GCgen0size:-0x1000000}"

cd "$repo"
echo "Serving on http://localhost:8080 (PostgreSQL data in $cluster, emails in $repo/outbox). Ctrl+C stops."
dotnet run --project src/Subscriptions -c Release -- serve "$@"
