#!/usr/bin/env bash
# make bench-backup (also the end of make bench): the time and size of a
# snapshot of a ≥ 1 GB pgbench database against what it replaces, in one run:
#   (a) pg_dump -Fc -f FILE            what the seed's backup script does
#   (b) pg_dump -Fc -Z0 -f FILE        the floor: the pure cost of the dump
#   (c) probe backup --no-upload       dump + zstd + SHA-256 + fsync, local only
#   (d) probe backup                   the same, uploaded in the same pass to a
#                                      local S3 server (versitygw on 127.0.0.1)
# The probe's config holds the database only (no data_dir), so (c) and (d)
# do the same work as (b) plus compression, hashing and the upload.
# Every case runs BENCH_RUNS times (3), interleaved, and the median by wall
# time counts (with 2 runs: the faster). Prints a table and the targets as
# met/missed; asserts nothing: it exits non-zero only when a case fails to run.
#
# The database is made once and cached in /var/tmp/backstop-bench-pg-<scale>/
# (a stopped PostgreSQL 15 cluster and a ready marker; scripts/bench-lib.sh,
# shared with bench-restore.sh); a second run skips the minutes of
# generation. BENCH_SCALE (70) is pgbench's scale factor.
set -euo pipefail
source "$(dirname "$0")/bench-lib.sh" # the cached cluster: bench_init, bench_db_up, pg_*, psql_q, say, die
RUNS=${BENCH_RUNS:-3}
VGW_VERSION=v1.8.0 # shared/testenv/s3.go VersityGWVersion: the same cached binary
VGW_DIR=${TMPDIR:-/tmp}/backstop-versitygw-$VGW_VERSION
VGW=$VGW_DIR/versitygw
S3_KEY=benchroot S3_SECRET=bench-root-secret-key S3_BUCKET=backstop-bench S3_REGION=us-east-1

bench_init bench-backup
S3_PORT=$((PG_PORT + 1))
VGW_PID=""
bench_on_exit '[ -n "$VGW_PID" ] && kill "$VGW_PID" 2>/dev/null && wait "$VGW_PID" 2>/dev/null'

bench_db_up

# versitygw: the binary shared/testenv builds, built the same way when missing.
if [ ! -x "$VGW" ]; then
  say "Building versitygw $VGW_VERSION (once; cached in $VGW_DIR)"
  mkdir -p "$VGW_DIR"
  (
    flock 8
    if [ ! -x "$VGW" ]; then
      tmp=$(mktemp -d "$VGW_DIR/build-XXXXXX")
      (cd "$tmp" && GOBIN=$tmp GOWORK=off GOFLAGS= go install "github.com/versity/versitygw/cmd/versitygw@$VGW_VERSION")
      mv "$tmp/versitygw" "$VGW" && rm -rf "$tmp"
    fi
  ) 8>"$VGW_DIR/.lock"
fi
mkdir -p "$W/s3"
ROOT_ACCESS_KEY_ID=$S3_KEY ROOT_SECRET_ACCESS_KEY=$S3_SECRET \
  "$VGW" --port "127.0.0.1:$S3_PORT" --region "$S3_REGION" posix "$W/s3" >"$W/versitygw.log" 2>&1 &
VGW_PID=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break; sleep 0.1; done
code=$(curl -sS -o "$W/mkbucket.out" -w '%{http_code}' -X PUT "http://127.0.0.1:$S3_PORT/$S3_BUCKET" \
  --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_KEY:$S3_SECRET" \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") || true
[ "$code" = 200 ] || { cat "$W/mkbucket.out" "$W/versitygw.log" >&2; die "create bucket $S3_BUCKET on versitygw: HTTP $code"; }

export DATABASE_URL="postgres://postgres:$PGPW@127.0.0.1:$PG_PORT/bench?sslmode=disable"
export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET
probe_config() { # backup dir
  cat <<YAML
host: bench
state_dir: $W/state
checks:
  - {name: disk, type: disk, paths: [/]}
backup:
  dir: $1
  database: {dsn: "\${DATABASE_URL}", pg_dump: host}
store:
  s3: {bucket: $S3_BUCKET, region: $S3_REGION, endpoint: "http://127.0.0.1:$S3_PORT"}
YAML
}

TICK=$(getconf CLK_TCK)
vgw_ticks() { awk '{print $14 + $15}' "/proc/$VGW_PID/stat"; }
# timed CASE RUN CMD...: runs CMD, appends "wall user sys" to $W/CASE.times
timed() {
  local c=$1 r=$2; shift 2
  local TIMEFORMAT='%R %U %S'
  { time "$@" >"$W/$c.$r.out" 2>"$W/$c.$r.err"; } 2>"$W/time" ||
    { cat "$W/$c.$r.err" >&2; die "case $c, run $r failed: $*"; }
  printf '%s' "$(cat "$W/time")" >>"$W/$c.times"
}
snapshot_size() { # JSON from probe backup --json: the snapshot's files
  local dir; dir=$(jq -r .path "$1")
  du -sb "$dir" | cut -f1
}

say "Backup of database bench: $(awk -v b="$DB_BYTES" 'BEGIN {printf "%.2f GB (%.2f GiB)", b / 1e9, b / 2^30}'), pgbench scale $SCALE, $ROWS accounts; $RUNS runs per case, interleaved"
for r in $(seq 1 "$RUNS"); do
  printf 'run %s:' "$r"
  timed a "$r" pg_dump -Fc -f "$W/a.dump" -p "$PG_PORT" bench
  echo " $(stat -c %s "$W/a.dump")" >>"$W/a.times"; rm -f "$W/a.dump"; printf ' (a)'

  timed b "$r" pg_dump -Fc -Z0 -f "$W/b.dump" -p "$PG_PORT" bench
  echo " $(stat -c %s "$W/b.dump")" >>"$W/b.times"; rm -f "$W/b.dump"; printf ' (b)'

  probe_config "$W/backups-c$r" >"$W/c$r.yaml"
  timed c "$r" "$PROBE" --config "$W/c$r.yaml" backup --no-upload --json
  jq -e '.uploaded == false' "$W/c.$r.out" >/dev/null || die "(c) run $r: unexpected result: $(cat "$W/c.$r.out")"
  echo " $(snapshot_size "$W/c.$r.out") $(jq .manifest.db.duration_ms "$W/c.$r.out")" >>"$W/c.times"; rm -rf "$W/backups-c$r"; printf ' (c)'

  probe_config "$W/backups-d$r" >"$W/d$r.yaml"
  v0=$(vgw_ticks)
  timed d "$r" "$PROBE" --config "$W/d$r.yaml" backup --json
  v1=$(vgw_ticks)
  jq -e '.uploaded == true' "$W/d.$r.out" >/dev/null ||
    die "(d) run $r: not uploaded: $(jq -r '.upload_error // .' "$W/d.$r.out")"
  id=$(jq -r .manifest.id "$W/d.$r.out")
  s3bytes=$(du -sb "$W/s3/$S3_BUCKET/bench/snapshots/$id" | cut -f1)
  echo " $(snapshot_size "$W/d.$r.out") $s3bytes $(awk -v t=$((v1 - v0)) -v k="$TICK" 'BEGIN {printf "%.2f", t / k}')" >>"$W/d.times"
  rm -rf "$W/backups-d$r" "$W/s3/$S3_BUCKET/bench"; printf ' (d)\n'
done

# pick CASE: the median run by wall time (the faster of two) as
# "wall cpu size [s3bytes s3cpu]"
pick() { sort -n -k1,1 "$W/$1.times" | awk -v n="$RUNS" 'NR == int((n + 1) / 2) {printf "%s %.2f %s %s %s", $1, $2 + $3, $4, $5, $6}'; }
read -r aw ac as _ <<<"$(pick a)"
read -r bw bc bs _ <<<"$(pick b)"
read -r cw cc cs cdb _ <<<"$(pick c)"
read -r dw dc ds d3 dv <<<"$(pick d)"

say "results ($(nproc) cores shared with other work; caches warm, not dropped: page cache cannot be dropped here)"
row() { awk -v n="$1" -v w="$2" -v c="$3" -v s="$4" -v bw="$bw" -v bs="$bs" \
  'BEGIN {printf "%-34s %8.2f %8.2f %10.1f %9.2fx %9.3f\n", n, w, c, s / 1e6, w / bw, s / bs}'; }
printf '%-34s %8s %8s %10s %10s %9s\n' case "wall s" "cpu s" "size MB" "wall/(b)" "size/(b)"
row "(a) pg_dump -Fc" "$aw" "$ac" "$as"
row "(b) pg_dump -Fc -Z0" "$bw" "$bc" "$bs"
row "(c) probe backup --no-upload" "$cw" "$cc" "$cs"
row "(d) probe backup, S3 upload" "$dw" "$dc" "$ds"
echo "cpu = user + system time of the command and its children (pg_dump under the probe); the"
echo "PostgreSQL server's work is the same in every case and not counted. versitygw used"
echo "$dv s CPU in (d)'s counted run; the object it stored is $(awk -v b="$d3" 'BEGIN {printf "%.1f", b / 1e6}') MB."
echo "(c) spent $(awk -v m="$cdb" 'BEGIN {printf "%.2f", m / 1000}') s in the dump itself (manifest db.duration_ms); the rest is before it"
echo "(connect, exact row counts for the manifest, pg_dump preflight) and after it (manifest, catalog)."
echo "database $DB_BYTES bytes (pg_database_size), pgbench scale $SCALE; probe config: the database only."

say "targets"
verdict() { if awk "BEGIN {exit !($1)}"; then echo met; else echo missed; fi; }
printf '%-58s %-7s %s\n' "(c) wall <= 1.15 x (b)" "$(verdict "$cw <= 1.15 * $bw")" \
  "$(awk -v c="$cw" -v b="$bw" 'BEGIN {printf "%.2fx (%.2f s vs %.2f s)", c / b, c, b}')"
printf '%-58s %-7s %s\n' "(a) wall / (c) wall >= 3, (c) size <= (a) size" "$(verdict "$aw >= 3 * $cw && $cs <= $as")" \
  "$(awk -v a="$aw" -v c="$cw" -v as="$as" -v cs="$cs" 'BEGIN {printf "%.2fx faster, %.1f MB vs %.1f MB", a / c, cs / 1e6, as / 1e6}')"
printf '%-58s %-7s %s\n' "(d) wall <= 1.3 x (b)" "$(verdict "$dw <= 1.3 * $bw")" \
  "$(awk -v d="$dw" -v b="$bw" 'BEGIN {printf "%.2fx (%.2f s vs %.2f s)", d / b, d, b}')"
printf '%-58s %-7s %s\n' "(c) cpu vs (b) cpu (reported, no target)" "-" \
  "$(awk -v c="$cc" -v b="$bc" 'BEGIN {printf "%.2fx (%.2f s vs %.2f s)", c / b, c, b}')"
