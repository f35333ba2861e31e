#!/bin/sh
# PostgreSQL on a mounted filesystem, for the database-cycle test (as root: PostgreSQL runs as
# the postgres user). Subcommands, DIR being the mount point (the cluster lives in DIR/pgdata):
#   init DIR PORT       initdb, start, create the table `commits (n int primary key, phase text)`
#   start DIR PORT      start (crash recovery replays the WAL), wait until it accepts
#   stop DIR            fast shutdown (checkpoint); `kill DIR` kills the server's processes at once
#   load DIR PORT PHASE LOG
#                       commits rows one transaction each (n counts on from the highest in the
#                       table); appends n to LOG after each COMMIT returned; runs until killed
#   check DIR PORT LOG  prints "rows=R missing=M" for the numbers in LOG not in the table
set -eu
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cmd=$1; dir=$2
pg() { runuser -u postgres -- "$@"; }
sql() { pg "$PGBIN/psql" -h "$dir" -p "$port" -d postgres -qtAX -v ON_ERROR_STOP=1 -c "$1"; }
case "$cmd" in
init)
  port=$3
  mkdir -p "$dir/pgdata"; chown postgres "$dir" "$dir/pgdata"
  pg "$PGBIN/initdb" -D "$dir/pgdata" -A trust >/dev/null
  pg "$PGBIN/pg_ctl" -D "$dir/pgdata" -l "$dir/pg.log" -o "-k $dir -c listen_addresses='' -p $port -c fsync=on -c synchronous_commit=on" -w start >/dev/null
  sql "CREATE TABLE commits (n int PRIMARY KEY, phase text)"
  ;;
start)
  port=$3
  pg "$PGBIN/pg_ctl" -D "$dir/pgdata" -l "$dir/pg.log" -o "-k $dir -c listen_addresses='' -p $port" -t 120 -w start >/dev/null \
    || { tail -20 "$dir/pg.log"; exit 1; }
  ;;
stop)
  pg "$PGBIN/pg_ctl" -D "$dir/pgdata" -m fast -t 60 -w stop >/dev/null
  ;;
kill)
  # The postmaster and its children (whose titles do not name the directory), and wait until
  # they are gone: their shared memory would keep a server on the replicated copy (same
  # inode, same key) from starting.
  pm=$(pgrep -f -- "-D $dir/pgdata" || true)
  for p in $pm; do pkill -9 -P "$p" || true; kill -9 "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=""
    for p in $pm; do kill -0 "$p" 2>/dev/null && alive=1; pgrep -P "$p" >/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  ;;
load)
  port=$3; phase=$4; log=$5
  n=$(sql "SELECT coalesce(max(n), 0) FROM commits")
  while :; do
    n=$((n + 1))
    sql "INSERT INTO commits VALUES ($n, '$phase')" || exit 0
    echo "$n" >> "$log"
  done
  ;;
check)
  port=$3; log=$4
  sql "SELECT n FROM commits" | sort > "$dir.rows.tmp"
  rows=$(wc -l < "$dir.rows.tmp")
  missing=$(sort "$log" | comm -23 - "$dir.rows.tmp" | wc -l)
  rm -f "$dir.rows.tmp"
  echo "rows=$rows missing=$missing"
  ;;
esac
