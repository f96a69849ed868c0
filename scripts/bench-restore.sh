#!/usr/bin/env bash
# make bench-restore (also the end of make bench): probe restore against what
# it replaces, on the >= 1 GB pgbench database of bench-backup.sh (the same
# cached cluster: scripts/bench-lib.sh), in one run:
#   (a)  createdb + pg_restore -d NEW dump   a bare restore of a pg_dump -Fc file
#                                            into a new database (the baseline)
#   (a2) the same with pg_restore -j 2       for reference
#   (b)  probe restore --snapshot ID --only db --yes, of a snapshot taken by
#        probe backup --no-upload (config: the database only)
#   (c)  pg_restore --clean -d LIVE dump     the seeds' in-place restore
#   (d)  probe restore --latest --yes        end to end: db + data + code
#        (docker strategy: webapp v1/v2 containers behind a kamal-proxy
#        stand-in, as shared/testenv builds them) + ready through the proxy
# The app stays live through every case: a writer (scripts/writeloop) writes
# one row at a time into the live database on a new connection each, reading
# the app's data as a real write does (INSERT INTO bench_writes SELECT ...
# FROM pgbench_accounts WHERE aid = $1), so every case pays the same load;
# its longest failure window during (b) and (c) is their write-unavailability.
# (a) and (b) run BENCH_RUNS times (3), interleaved, and the median by wall
# time counts (with 2 runs: the faster); (a2), (c) and (d) run once.
# Prints one table (figures, ratio or bound, met/missed) with the restores'
# step durations; asserts nothing: it exits non-zero only when a case fails
# to run.
#
# Works on benchlive, a copy of the cached `bench` database, and drops every
# other database at the end: `bench` stays as bench-backup.sh expects it.
# Docker: containers bench-web-v1, bench-web-v2, bench-proxy and images
# backstop-bench/*, removed at the end.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh" # the cached cluster: bench_init, bench_db_up, pg_*, psql_q, say, die

LIVE=benchlive
APP=bench-web PROXY=bench-proxy
WEB_IMG=backstop-bench/webapp PROXY_IMG=backstop-bench/kamal-proxy:latest
WRITE_SQL='INSERT INTO bench_writes (aid) SELECT aid FROM pgbench_accounts WHERE aid = $1'

RUNS=${BENCH_RUNS:-3} # runs of (a) and (b); the median by wall time counts (with 2: the faster)

bench_init bench-restore
WL_PID=""
# every database but bench, postgres and the templates: the copies, the
# restores' scratch and pre-state databases (also those of a killed run)
drop_extra_dbs() {
  local db
  for db in $(psql_q -c "SELECT datname FROM pg_database WHERE datname NOT IN ('bench', 'postgres', 'template0', 'template1')" postgres); do
    psql_q -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" postgres
  done
}
drop_pre_states() { # the live database's restore leftovers (<live>_pre_<txn>, ...)
  local db
  for db in $(psql_q -c "SELECT datname FROM pg_database WHERE starts_with(datname, '${LIVE}_')" postgres); do
    psql_q -c "DROP DATABASE \"$db\" WITH (FORCE)" postgres
  done
}
docker_down() { docker rm -f "$APP-v1" "$APP-v2" "$PROXY" >/dev/null 2>&1 || true; }
bench_on_exit '[ -n "$PG_UP" ] && drop_extra_dbs'
bench_on_exit 'docker rmi -f "$WEB_IMG:v1" "$WEB_IMG:v2" "$PROXY_IMG" >/dev/null 2>&1'
bench_on_exit docker_down
bench_on_exit '[ -n "$WL_PID" ] && kill "$WL_PID" 2>/dev/null && wait "$WL_PID" 2>/dev/null'

docker info >/dev/null 2>&1 || die "the Docker engine does not answer: run make deps"
command -v jq >/dev/null || die "jq is not installed"
docker_down # left by a killed run

say "Building writeloop, and the webapp and kamal-proxy stand-in images (as shared/testenv does)"
go build -o "$W/writeloop" ./scripts/writeloop
mkdir -p "$W/img-web" "$W/img-proxy"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$W/img-web/webapp" ./shared/testenv/images/webapp
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$W/img-proxy/kamal-proxy" ./shared/testenv/images/kamalproxy
cat >"$W/img-web/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY webapp /webapp
HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["/webapp", "-healthcheck", "http://127.0.0.1:3000/up"]
ENTRYPOINT ["/webapp"]
DOCKERFILE
cat >"$W/img-proxy/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY kamal-proxy /usr/local/bin/kamal-proxy
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/usr/local/bin/kamal-proxy"]
DOCKERFILE
# v1 and v2 are distinct images (a label apart), as Kamal's app:<version> are.
for v in v1 v2; do
  docker build -q --label "backstop.bench.version=$v" -t "$WEB_IMG:$v" "$W/img-web" >"$W/build.log" 2>&1 ||
    { cat "$W/build.log" >&2; die "docker build $WEB_IMG:$v"; }
done
docker build -q -t "$PROXY_IMG" "$W/img-proxy" >"$W/build.log" 2>&1 || { cat "$W/build.log" >&2; die "docker build $PROXY_IMG"; }

bench_db_up
drop_extra_dbs
say "Copying bench to $LIVE (the live database of every case) with a table for the writer"
psql_q -c "CREATE DATABASE $LIVE TEMPLATE bench STRATEGY FILE_COPY" postgres
psql_q -c "CREATE TABLE bench_writes (at timestamptz NOT NULL DEFAULT clock_timestamp(), aid int NOT NULL)" "$LIVE"
export DATABASE_URL="postgres://postgres:$PGPW@127.0.0.1:$PG_PORT/$LIVE?sslmode=disable"

# timed CASE CMD...: runs CMD (stdout $W/CASE.out, stderr $W/CASE.err), its
# wall seconds in $W/CASE.wall; dies when it fails.
timed() {
  local c=$1; shift
  local TIMEFORMAT='%R'
  { time "$@" >"$W/$c.out" 2>"$W/$c.err"; } 2>"$W/$c.wall" ||
    { tail -30 "$W/$c.err" >&2; die "case $c failed: $*"; }
}
wall() { cat "$W/$1.wall"; }
fresh_restore() { # DB [pg_restore flags]: createdb, then pg_restore the dump into it
  local db=$1; shift
  createdb -p "$PG_PORT" "$db" && pg_restore -p "$PG_PORT" -d "$db" "$@" "$W/live.dump"
}
accounts() { psql_q -c "SELECT count(*) FROM pgbench_accounts" "$1"; }
check_accounts() { # DB CASE
  local n; n=$(accounts "$1")
  [ "$n" = "$ROWS" ] || die "$2: $1 has $n accounts after the restore, want $ROWS"
}

# wl_start CASE / wl_stop: the writer on the live database.
wl_start() {
  WRITELOOP_DSN=$DATABASE_URL "$W/writeloop" -keys "$ROWS" -sql "$WRITE_SQL" >"$W/wl-$1.json" 2>"$W/wl-$1.err" &
  WL_PID=$!
  for _ in $(seq 1 100); do
    grep -q 'first insert committed' "$W/wl-$1.err" && return 0
    kill -0 "$WL_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$W/wl-$1.err" >&2; die "writeloop did not write into $LIVE"
}
wl_stop() {
  kill -TERM "$WL_PID" && wait "$WL_PID" || die "writeloop failed: $(cat "$W/wl-$1.err")"
  WL_PID=""
}

say "Restore of database $LIVE: $(awk -v b="$DB_BYTES" 'BEGIN {printf "%.2f GB (%.2f GiB)", b / 1e9, b / 2^30}'), pgbench scale $SCALE, $ROWS accounts; (a) and (b) $RUNS runs each, interleaved; the writer runs during every case"
timed dump pg_dump -Fc -f "$W/live.dump" -p "$PG_PORT" "$LIVE"
echo "pg_dump -Fc: $(wall dump) s, $(stat -c %s "$W/live.dump") bytes (not a case: the input of (a), (a2), (c))"

probe_config() { # NAME [extra YAML]: $W/NAME.yaml
  cat >"$W/$1.yaml" <<YAML
host: bench
state_dir: $W/$1-state
checks:
  - {name: disk, type: disk, paths: [/]}
backup:
  dir: $W/$1-backups
  database: {dsn: "\${DATABASE_URL}", pg_dump: host}
${2:-}
YAML
}
probe_config db
timed snap "$PROBE" --config "$W/db.yaml" backup --no-upload --json
SNAP=$(jq -r .manifest.id "$W/snap.out")
echo "snapshot $SNAP for (b): probe backup --no-upload, $(wall snap) s"

# The app stays live during every restore: the writer runs during (a) too
# (on the live database, which (a) does not touch), so (a) and (b) share
# the load; its failures count for (b) and (c).
for r in $(seq 1 "$RUNS"); do
  wl_start "a.$r"
  timed "a.$r" fresh_restore restore_a
  wl_stop "a.$r"
  check_accounts restore_a "(a)"; psql_q -c "DROP DATABASE restore_a" postgres
  echo "$(wall "a.$r") $r" >>"$W/a.times"
  echo "run $r: (a)  createdb + pg_restore: $(wall "a.$r") s"

  wl_start "b.$r"
  timed "b.$r" "$PROBE" --config "$W/db.yaml" restore --snapshot "$SNAP" --only db --yes --json
  wl_stop "b.$r"
  jq -e '.reverted == false and (.steps | length > 0) and all(.steps[]; .status == "ok")' "$W/b.$r.out" >/dev/null ||
    die "(b) run $r: the restore did not succeed: $(cat "$W/b.$r.out")"
  check_accounts "$LIVE" "(b)"
  drop_pre_states
  echo "$(wall "b.$r") $r" >>"$W/b.times"
  echo "run $r: (b)  probe restore --only db: $(wall "b.$r") s; writer's longest failure window $(jq .longest_failure_ms "$W/wl-b.$r.json") ms"
done

wl_start a2
timed a2 fresh_restore restore_a2 -j 2
wl_stop a2
check_accounts restore_a2 "(a2)"; psql_q -c "DROP DATABASE restore_a2" postgres
echo "(a2) createdb + pg_restore -j 2: $(wall a2) s"

wl_start c
timed c pg_restore -p "$PG_PORT" --clean -d "$LIVE" "$W/live.dump"
wl_stop c
check_accounts "$LIVE" "(c)"
echo "(c)  pg_restore --clean: $(wall c) s; writer's longest failure window $(jq .longest_failure_ms "$W/wl-c.json") ms"

say "(d) end to end: $APP-v1 serves through $PROXY, snapshot, deploy v2 (with a migration and changed files), then probe restore --latest"
wait_healthy() { # CONTAINER
  for _ in $(seq 1 150); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$1")" = healthy ] && return 0
    sleep 0.2
  done
  die "container $1 is not healthy after 30 s: $(docker inspect -f '{{json .State}}' "$1")"
}
proxy_to() { # CONTAINER: kamal-proxy deploy, as Kamal does
  local ip; ip=$(docker inspect -f '{{.NetworkSettings.IPAddress}}' "$1")
  docker exec "$PROXY" kamal-proxy deploy "$APP" --target "$ip:3000" --host localhost >"$W/deploy.out" 2>&1 ||
    { cat "$W/deploy.out" >&2; die "kamal-proxy deploy $APP to $1"; }
}
docker run -d --name "$PROXY" -p 127.0.0.1::80 "$PROXY_IMG" >/dev/null
PROXY_PORT=$(docker port "$PROXY" 80/tcp | head -1 | sed 's/.*://')
served() { curl -sS -m 5 "http://localhost:$PROXY_PORT/version" 2>&1 || true; }
docker run -d --name "$APP-v1" -e VERSION=v1 "$WEB_IMG:v1" >/dev/null
wait_healthy "$APP-v1"
proxy_to "$APP-v1"
[ "$(served)" = v1 ] || die "through the proxy before the snapshot: got $(served), want v1"

# the app's data dir: 200 files of 100 kB (20 MB) in 10 directories
mkdir -p "$W/appdata"
for i in $(seq 0 199); do
  mkdir -p "$W/appdata/uploads/$((i % 10))"
  head -c 100000 /dev/urandom >"$W/appdata/uploads/$((i % 10))/scan-$i.bin"
done
tree_sum() { (cd "$W/appdata" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16); }
DATA_SUM=$(tree_sum)

probe_config e2e "  data_dir: $W/appdata
  app: {container: $APP}
rollback:
  ready_url: http://localhost:$PROXY_PORT/readyz
  timeout: 60s
  interval: 1s
  log: $W/rollback.log
  code:
    strategy: docker
    port: 3000
    proxy: {container: $PROXY, service: $APP, host: localhost}"
timed snap2 "$PROBE" --config "$W/e2e.yaml" backup --no-upload --json
[ "$(jq -r .manifest.app.image "$W/snap2.out")" = "$WEB_IMG:v1" ] ||
  die "(d): the snapshot records app image $(jq -r .manifest.app.image "$W/snap2.out"), want $WEB_IMG:v1"
echo "snapshot $(jq -r .manifest.id "$W/snap2.out") for (d): db + data + app image $WEB_IMG:v1, $(wall snap2) s"

# deploy v2 as Kamal does: start it, switch the proxy, stop v1
docker run -d --name "$APP-v2" -e VERSION=v2 "$WEB_IMG:v2" >/dev/null
wait_healthy "$APP-v2"
proxy_to "$APP-v2"
docker stop "$APP-v1" >/dev/null
[ "$(served)" = v2 ] || die "through the proxy after deploying v2: got $(served), want v2"
psql_q -c "ALTER TABLE bench_writes DROP COLUMN aid" "$LIVE" # v2's migration
rm -rf "$W/appdata/uploads/3" && head -c 100000 /dev/urandom >"$W/appdata/uploads/0/scan-0.bin"
echo "v2 serves; bench_writes.aid dropped; files rewritten and removed"

timed d "$PROBE" --config "$W/e2e.yaml" restore --latest --yes --json
jq -e '.reverted == false and (.steps | length == 4) and all(.steps[]; .status == "ok")' "$W/d.out" >/dev/null ||
  die "(d): the restore did not succeed: $(cat "$W/d.out")"
D_SERVED=$(served)
D_DATA=$(tree_sum)
D_COL=$(psql_q -c "SELECT count(*) FROM information_schema.columns WHERE table_name = 'bench_writes' AND column_name = 'aid'" "$LIVE")
D_RUNNING=$(docker ps --filter "name=^$APP-" --format '{{.Names}}' | sort | tr '\n' ' ')
echo "(d)  probe restore --latest: $(wall d) s; through the proxy: $D_SERVED; running: $D_RUNNING"

# ---- the table ----
ms() { jq -r "$2" "$W/$1"; }
logms() { # CASE MSG: duration_ms of the probe's log line MSG (JSON on stderr)
  jq -rR --arg m "$2" 'fromjson? | select(.msg == $m) | .duration_ms' "$W/$1.err" | tail -1
}
stepms() { jq -r --arg s "$2" '[.steps[] | select(.step == $s) | .duration_ms] | first // 0' "$W/$1.out"; }
s() { awk -v m="${1:-0}" 'BEGIN {printf "%.2f s", m / 1000}'; }
# median CASE: "wall run" of the median run by wall time (the faster of two)
median() { sort -n -k1,1 "$W/$1.times" | awk -v n="$RUNS" 'NR == int((n + 1) / 2) {print $1, $2}'; }
read -r aw ar <<<"$(median a)"
read -r bw br <<<"$(median b)"
a2w=$(wall a2) cw=$(wall c) dw=$(wall d)
b=b.$br
b_total=$(ms $b.out .duration_ms) b_db=$(stepms $b db) b_ready=$(stepms $b ready) b_swap=$(ms $b.out '.db_unavailable_ms // 0')
b_pgr=$(logms $b "pg_restore done") b_an=$(logms $b "analyze done") b_val=$(logms $b validated)
b_pre=$((b_total - b_db - b_ready))
b_dbrest=$((b_db - ${b_pgr:-0} - ${b_an:-0} - ${b_val:-0} - b_swap))
pre_id=$(ms $b.out .pre_snapshot)
pre_dump=$(jq -r '.db.duration_ms // 0' "$W/db-backups/$pre_id/manifest.json" 2>/dev/null || echo 0)
# the writer during (b): the worst of all runs
wlb_fail=$(jq -s 'map(.longest_failure_ms) | max' "$W"/wl-b.*.json) wlb_gap=$(jq -s 'map(.longest_gap_ms) | max' "$W"/wl-b.*.json)
wlb_counts=$(jq -rs '"\(map(.failures) | add) of \(map(.attempts) | add) writes failed"' "$W"/wl-b.*.json)
wlc_fail=$(ms wl-c.json .longest_failure_ms) wlc_gap=$(ms wl-c.json .longest_gap_ms)
d_total=$(ms d.out .duration_ms)
d_pre=$((d_total - $(jq '[.steps[].duration_ms] | add' "$W/d.out")))

verdict() { if awk "BEGIN {exit !($1)}"; then echo met; else echo missed; fi; }
say "results ($(nproc) cores shared with other work; page cache warm, not dropped)"
row() { printf '%-56s %9s  %-40s %s\n' "$@"; }
sec() { awk -v x="$1" 'BEGIN {printf "%.2f s", x}'; }
row measure figure "ratio / bound" verdict
row "(a)  createdb + pg_restore of the -Fc dump" "$(sec "$aw")" "the baseline" -
row "(a2) the same, pg_restore -j 2" "$(sec "$a2w")" "$(awk -v x="$a2w" -v a="$aw" 'BEGIN {printf "%.2f x (a)", x / a}')" -
row "(b)  probe restore --only db (wall)" "$(sec "$bw")" \
  "$(awk -v x="$bw" -v a="$aw" 'BEGIN {printf "%.2f x (a); bound 1.2 x", x / a}')" "$(verdict "$bw <= 1.2 * $aw")"
row "       before the db step (verify, pre-restore snapshot)" "$(s "$b_pre")" "pre-restore pg_dump $(s "$pre_dump")" ""
row "       db: pg_restore (zstd-decoded stream)" "$(s "$b_pgr")" "$(awk -v x="${b_pgr:-0}" -v a="$aw" 'BEGIN {printf "%.2f x (a)", x / 1000 / a}')" ""
row "       db: ANALYZE" "$(s "$b_an")" "" ""
row "       db: validate (tables, exact row counts)" "$(s "$b_val")" "" ""
row "       db: swap (the probe's own figure)" "$(s "$b_swap")" "" ""
row "       db: create, settings, other" "$(s "$b_dbrest")" "" ""
row "       (b) less the pre-restore snapshot" "$(awk -v x="$bw" -v p="$b_pre" 'BEGIN {printf "%.2f s", x - p / 1000}')" \
  "$(awk -v x="$bw" -v p="$b_pre" -v a="$aw" 'BEGIN {printf "%.2f x (a)", (x - p / 1000) / a}')" ""
row "       ready; process start and exit" "$(s "$b_ready")" "$(awk -v w="$bw" -v t="$b_total" 'BEGIN {printf "process %.2f s beyond duration_ms", w - t / 1000}')" ""
row "writes unavailable during (b) (writer)" "$(s "$wlb_fail")" \
  "bound 1 s; $wlb_counts" "$(verdict "$wlb_fail <= 1000")"
row "       longest gap between committed writes" "$(s "$wlb_gap")" "" ""
row "(c)  pg_restore --clean into the live DB" "$(sec "$cw")" "$(awk -v x="$cw" -v a="$aw" 'BEGIN {printf "%.2f x (a)", x / a}')" -
row "writes unavailable during (c) (writer)" "$(s "$wlc_fail")" \
  "$(awk -v f="$wlc_fail" -v c="$cw" 'BEGIN {printf "%.0f%% of the restore", f / 10 / c}'); $(jq -r '"\(.failures) of \(.attempts) failed"' "$W/wl-c.json")" -
row "       longest gap between committed writes" "$(s "$wlc_gap")" "" ""
row "(d)  probe restore end to end (wall)" "$(sec "$dw")" "bound 30 s (the seeds' SLA: 60 s)" "$(verdict "$dw <= 30")"
row "       before the steps (verify, pre-restore snapshot)" "$(s "$d_pre")" \
  "$(awk -v x="$dw" -v p="$d_pre" 'BEGIN {printf "without it %.2f s", x - p / 1000}')" ""
for st in db data code ready; do
  row "       $st" "$(s "$(stepms d "$st")")" "$(jq -r --arg s "$st" '[.steps[] | select(.step == $s) | .detail] | first // "" | .[0:40]' "$W/d.out")" ""
done
row "(d)  the result: v1 serves, data and schema as snapshot" "$D_SERVED" \
  "data $([ "$D_DATA" = "$DATA_SUM" ] && echo identical || echo DIFFERENT), column aid $([ "$D_COL" = 1 ] && echo back || echo MISSING)" \
  "$([ "$D_SERVED" = v1 ] && [ "$D_DATA" = "$DATA_SUM" ] && [ "$D_COL" = 1 ] && echo met || echo missed)"
echo
echo "database $DB_BYTES bytes (pg_database_size of bench; $LIVE is a copy plus bench_writes); dump $(stat -c %s "$W/live.dump") bytes."
echo "writer: a new connection per write (200 ms connect timeout, 1 s per attempt): $WRITE_SQL"
echo "errors the writer saw in (b), all runs: $(jq -sc 'map(.errors // {} | to_entries[]) | group_by(.key) | map({(.[0].key): (map(.value) | add)}) | add // {}' "$W"/wl-b.*.json | cut -c1-600)"
echo "runs (wall s): (a) $(cut -d' ' -f1 "$W/a.times" | tr '\n' ' ')| (b) $(cut -d' ' -f1 "$W/b.times" | tr '\n' ' ')"
echo "errors the writer saw in (c): $(jq -c '.errors // {}' "$W/wl-c.json" | cut -c1-400)"
echo "rollback log of (d):"; sed 's/^/  /' "$W/rollback.log"
