#!/usr/bin/env bash
# ingest_pg.sh - C-STORE ingest with the index on PostgreSQL: dicomflow against Orthanc with its PostgreSQL
# plugin, and dicomflow on SQLite, in one run of the referee (/work/shared/bench/ingest_bench.sh).
#
# Receivers (all with the files on the local disk, durable before the C-STORE response):
#   orthanc-pg      Orthanc (Debian) + libOrthancPostgreSQLIndex.so (Debian orthanc-postgresql), index only
#   dicomflow-pg    dicomflow serve, DICOMFLOW_INDEX__URL=postgresql+psycopg://...
#   dicomflow-sqlite dicomflow serve on its default SQLite index
# The referee runs every receiver in a private network namespace where only loopback exists, so each
# PostgreSQL receiver starts its own PostgreSQL (Debian's, as the postgres user, 127.0.0.1 only, default
# durability: fsync and synchronous_commit on) inside its start command, in the foreground, as a child of
# the receiver's process tree (its CPU is counted with the receiver's), on a fresh cluster per repetition.
#
# Usage:
#   bench/ingest_pg.sh [--data DIR] [--reps R] [--parallel K] [other ingest_bench.sh options]
#     defaults: --data /work/benchdata/ct1000 --reps 5 --parallel 4; the results (TSV and markdown) go to
#     ./ingest_pg_<timestamp>.tsv/.md unless --results is given.
#   Environment: REFEREE (default /work/shared/bench/ingest_bench.sh), DICOMFLOW (the dicomflow command,
#   default this checkout's .venv/bin/dicomflow), PGBIN (default the newest /usr/lib/postgresql/*/bin).
# Goal (issue 11): dicomflow-pg >= 1.2x orthanc-pg on 1 and 4 associations.
#
# Internal: `ingest_pg.sh --receiver-start KIND WORK STORE DICOM_PORT HTTP_PORT PG_PORT` is the receivers'
# start command (KIND orthanc or dicomflow).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(dirname "$HERE")"
REFEREE="${REFEREE:-/work/shared/bench/ingest_bench.sh}"
DICOMFLOW="${DICOMFLOW:-$ROOT/.venv/bin/dicomflow}"
PGBIN="${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}"
ORTHANC_PLUGIN=/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so

pg() { runuser -u postgres -- "$@"; }

# Start PostgreSQL in the foreground (a child of this shell) on 127.0.0.1:$2, data in $1/pg, with database $3.
start_postgres() {
  local dir="$1/pg" port="$2" db="$3" i
  mkdir -p "$dir" && chown postgres: "$dir"
  pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  pg "$PGBIN/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 -c port="$port" \
    -c unix_socket_directories="$dir" ${PG_OPTS:-} >"$dir/postgres.log" 2>&1 &
  PG_PID=$!
  for i in $(seq 1 100); do
    pg "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$port" -d postgres -c "CREATE DATABASE $db" || return 1
}

receiver_start() { # kind work store dicom_port http_port pg_port
  local kind="$1" work="$2" store="$3" port="$4" http="$5" pgport="$6" child
  start_postgres "$work" "$pgport" "$kind" || exit 1
  if [[ "$kind" == orthanc ]]; then
    mkdir -p "$work/index" "$store"
    cat >"$work/orthanc.json" <<EOF
{
  "Name" : "bench-orthanc-pg",
  "StorageDirectory" : "$store",
  "IndexDirectory" : "$work/index",
  "StorageCompression" : false,
  "Plugins" : [ "$ORTHANC_PLUGIN" ],
  "PostgreSQL" : {
    "EnableIndex" : true, "EnableStorage" : false, "Host" : "127.0.0.1", "Port" : $pgport,
    "Database" : "orthanc", "Username" : "postgres", "Password" : "", "Lock" : false
  },
  "HttpServerEnabled" : true, "HttpPort" : $http, "RemoteAccessAllowed" : false,
  "AuthenticationEnabled" : false, "DicomServerEnabled" : true, "DicomAet" : "ORTHANC",
  "DicomPort" : $port, "DicomCheckCalledAet" : false, "DicomAlwaysAllowEcho" : true,
  "DicomAlwaysAllowStore" : true, "DicomModalities" : { }, "SyncStorageArea" : true
}
EOF
    env TCP_NODELAY=1 Orthanc "$work/orthanc.json" &
  else
    env DICOMFLOW_INDEX__URL="postgresql+psycopg://postgres@127.0.0.1:$pgport/dicomflow" \
      "$DICOMFLOW" serve --data-dir "$store" --dimse-port "$port" --http-port "$http" &
  fi
  child=$!
  trap 'kill -TERM $child 2>/dev/null; wait $child; kill -INT $PG_PID 2>/dev/null; wait $PG_PID; exit 0' TERM INT
  wait "$child"
  kill -INT "$PG_PID" 2>/dev/null
  wait "$PG_PID"
}

if [[ "${1:-}" == --receiver-start ]]; then
  shift
  receiver_start "$@"
  exit $?
fi

# ---- the run ----------------------------------------------------------------------------------------
[[ -x "$PGBIN/postgres" ]] || { echo "no PostgreSQL under /usr/lib/postgresql/*/bin (Debian postgresql)" >&2; exit 2; }
[[ -f "$ORTHANC_PLUGIN" ]] || { echo "no $ORTHANC_PLUGIN (Debian orthanc-postgresql)" >&2; exit 2; }
[[ -x "$DICOMFLOW" ]] || { echo "no dicomflow command at $DICOMFLOW (make, or set DICOMFLOW)" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "run as root (network namespace, PostgreSQL as the postgres user)" >&2; exit 2; }

stamp="$(date +%Y%m%d_%H%M%S)"
args=("$@")
[[ " ${args[*]} " == *" --data "* ]] || args+=(--data /work/benchdata/ct1000)
[[ " ${args[*]} " == *" --reps "* ]] || args+=(--reps 5)
[[ " ${args[*]} " == *" --results "* ]] || args+=(--results "$PWD/ingest_pg_$stamp.tsv")
# the postgres user must reach each run's directory (the referee's default scratch root is mode 700)
workdir="$(mktemp -d "${TMPDIR:-/tmp}/ingest_pg.XXXXXX")" && chmod 755 "$workdir"
trap 'rm -rf "$workdir"' EXIT
echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# a venv's bin/ must stay off PATH (pynetdicom's storescu would shadow DCMTK's)
env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin bash "$REFEREE" --workdir "$workdir" \
  --receivers none \
  --receiver "orthanc-pg|4250|exec bash $SELF --receiver-start orthanc {WORK} {STORE} {PORT} 8050 5450|ORTHANC|orthanc_count 8050" \
  --receiver "dicomflow-pg|11150|exec bash $SELF --receiver-start dicomflow {WORK} {STORE} {PORT} 8051 5451|DICOMFLOW|runuser -u postgres -- $PGBIN/psql -tAq -h 127.0.0.1 -p 5451 -d dicomflow -c 'SELECT count(*) FROM instances'" \
  --receiver "dicomflow-sqlite|11151|exec $DICOMFLOW serve --data-dir {STORE} --dimse-port {PORT} --http-port 8052|DICOMFLOW|sqlite3 {STORE}/index.sqlite3 'SELECT count(*) FROM instances'" \
  "${args[@]}"
