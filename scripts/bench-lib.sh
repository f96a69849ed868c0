# Sourced by scripts/bench-backup.sh and scripts/bench-restore.sh: the cached
# >= 1 GB pgbench cluster both benchmarks run on, and the helpers around it.
#
#   bench_init NAME   work dir $W (on the cluster's disk), a random $PG_PORT,
#                     the cache lock (one run at a time per cache), the exit
#                     trap (bench_on_exit hooks, then the cluster is stopped
#                     and $W removed)
#   bench_db_up       make the database once (cached), start the cluster,
#                     check it is >= 1 GB, warm its files into the page cache;
#                     sets DB_BYTES and ROWS
#
# The database is made once and cached in /var/tmp/backstop-bench-pg-<scale>/
# (a stopped PostgreSQL 15 cluster and a ready marker); a second run skips the
# minutes of generation. BENCH_SCALE (70) is pgbench's scale factor. The
# database is `bench`; a benchmark that changes data works on copies of it and
# leaves `bench` as it found it.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PROBE=$ROOT/bin/probe
PGBIN=/usr/lib/postgresql/15/bin
export PATH=$PGBIN:$PATH # every case and the probe run the same pg_dump / pg_restore
SCALE=${BENCH_SCALE:-70}
CACHE=/var/tmp/backstop-bench-pg-$SCALE
MIN_DB_BYTES=${BENCH_MIN_DB_BYTES:-1000000000} # lowered only to try a script on a small scale
PGPW=bench-db-password
export PGPASSWORD=$PGPW PGHOST=127.0.0.1 PGUSER=postgres
PG_UP=""
BENCH_EXIT_HOOKS=()

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
pg_ctl() { runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CACHE/pg" "$@"; }
psql_q() { psql -qtAX -p "$PG_PORT" -v ON_ERROR_STOP=1 "$@"; }

# bench_on_exit CMD: run CMD (eval'd) at exit, before the cluster stops;
# hooks run last-registered first.
bench_on_exit() { BENCH_EXIT_HOOKS+=("$1"); }

bench_cleanup() {
  local i
  for ((i = ${#BENCH_EXIT_HOOKS[@]} - 1; i >= 0; i--)); do eval "${BENCH_EXIT_HOOKS[i]}" || true; done
  [ -n "$PG_UP" ] && pg_ctl -m fast stop >/dev/null 2>&1 || true
  rm -rf "$W"
}

bench_init() { # NAME
  BENCH_NAME=$1
  [ -x "$PROBE" ] || make -s probe
  mkdir -p /var/tmp
  W=$(mktemp -d "/var/tmp/backstop-$BENCH_NAME.XXXXXX") # same disk as the cluster
  chmod 755 "$W"
  PG_PORT=$((20000 + RANDOM % 20000))
  trap bench_cleanup EXIT
  # One run at a time per cache: the cluster is started and stopped by us.
  exec 9>"$CACHE.lock"
  flock 9
}

pg_start() { # [nice]: start the cached cluster on 127.0.0.1:$PG_PORT
  mkdir -p "$W/pgrun" && chown postgres "$W/pgrun"
  if pg_ctl status >/dev/null 2>&1; then pg_ctl -m fast stop >/dev/null; fi # left by a killed run
  local pre=()
  [ "${1:-}" = nice ] && pre=(nice -n 10)
  "${pre[@]}" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CACHE/pg" -l "$W/pgrun/pg.log" -w -t 120 \
    -o "-p $PG_PORT -k $W/pgrun -c listen_addresses=127.0.0.1 -c fsync=off ${PG_EXTRA:-}" start >/dev/null ||
    { tail -20 "$W/pgrun/pg.log" >&2; die "PostgreSQL did not start"; }
  PG_UP=1
}
pg_stop() { pg_ctl -m fast stop >/dev/null; PG_UP=""; }

bench_generate() {
  say "Making the database: pgbench -i -s $SCALE, random text in pgbench_accounts.filler (once; cached in $CACHE)"
  rm -rf "$CACHE" && mkdir -p "$CACHE/pg" && chown postgres "$CACHE/pg"
  echo "$PGPW" >"$W/pgpw" && chown postgres "$W/pgpw"
  nice -n 10 runuser -u postgres -- "$PGBIN/initdb" -D "$CACHE/pg" -U postgres --pwfile="$W/pgpw" \
    -A scram-sha-256 --no-sync >/dev/null
  PG_EXTRA="-c wal_level=minimal -c max_wal_senders=0 -c max_wal_size=4GB -c maintenance_work_mem=256MB" pg_start nice
  psql_q -c "CREATE DATABASE bench"
  nice -n 10 pgbench -q -i -s "$SCALE" -I dtG -p "$PG_PORT" bench >"$W/pgbench.log" 2>&1 ||
    { cat "$W/pgbench.log" >&2; die "pgbench -i failed"; }
  # A rewrite in one pass (CREATE TABLE AS, no WAL at wal_level=minimal)
  # instead of an UPDATE: the same table without the bloat. md5 text is
  # random hex, so the compression figures are those of real data, not of
  # pgbench's blank padding.
  nice -n 10 psql -qtAX -p "$PG_PORT" -v ON_ERROR_STOP=1 bench <<'SQL'
CREATE TABLE accounts_random WITH (fillfactor = 100) AS
  SELECT aid, bid, abalance,
         substr(md5(random()::text) || md5(random()::text) || md5(random()::text), 1, 84)::char(84) AS filler
  FROM pgbench_accounts;
DROP TABLE pgbench_accounts;
ALTER TABLE accounts_random RENAME TO pgbench_accounts;
ALTER TABLE pgbench_accounts ALTER COLUMN aid SET NOT NULL;
SQL
  nice -n 10 pgbench -q -i -I vp -p "$PG_PORT" bench >"$W/pgbench.log" 2>&1 ||
    { cat "$W/pgbench.log" >&2; die "pgbench -i -I vp failed"; }
  psql_q -c CHECKPOINT bench
  pg_stop
  touch "$CACHE/ready"
}

bench_db_up() {
  [ -f "$CACHE/ready" ] || bench_generate
  pg_start
  DB_BYTES=$(psql_q -c "SELECT pg_database_size('bench')" bench)
  ROWS=$(psql_q -c "SELECT count(*) FROM pgbench_accounts" bench)
  [ "$DB_BYTES" -ge "$MIN_DB_BYTES" ] || die "database is $DB_BYTES bytes, under 1 GB: raise BENCH_SCALE"
  # Caches cannot be dropped here (shared machine): warm the cluster's files
  # into the page cache instead, so no case pays a cold read the others don't.
  find "$CACHE/pg" -type f -exec cat {} + >/dev/null
}
