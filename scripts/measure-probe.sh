#!/usr/bin/env bash
# make measure (also part of make bench): the probe's memory and CPU per check
# round against a baseline run in the same script — one round of what the
# seed's monitor.sh does with curl, docker, df, openssl, psql and redis-cli.
# Prints a table; asserts nothing (speed and size are reported, not gated).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROBE=$ROOT/bin/probe
[ -x "$PROBE" ] || make -s probe
W=$(mktemp -d /tmp/backstop-measure.XXXXXX)
chmod 755 "$W"
INTERVAL=1s
ROUNDS=${ROUNDS:-30}
source scripts/seed-env.sh
trap cleanup EXIT
seed_up >/dev/null

TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime of the process
runs_of() { curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v c="$1" '$1 ~ "^backstop_check_runs_total\\{check=\""c"\"" {s += $2} END {print s+0}'; }

say "probe run: all six checks every $INTERVAL, $ROUNDS rounds measured after a 5-round warm-up"
"$PROBE" --config "$W/probe.yaml" run >"$W/run.log" 2>&1 &
RUN_PID=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$METRICS_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
until [ "$(runs_of web-health)" -ge 5 ]; do sleep 0.2; done
r0=$(runs_of web-health); c0=$(cpu_ticks "$RUN_PID"); max_rss=0
while [ "$(runs_of web-health)" -lt $((r0 + ROUNDS)) ]; do
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$RUN_PID/status")
  [ "$rss" -gt "$max_rss" ] && max_rss=$rss
  sleep 0.25
done
r1=$(runs_of web-health); c1=$(cpu_ticks "$RUN_PID")
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$RUN_PID/status")
anon=$(awk '/^RssAnon/ {print $2}' "/proc/$RUN_PID/status")
filerss=$(awk '/^RssFile/ {print $2}' "/proc/$RUN_PID/status")
probe_ms=$(awk -v c=$((c1 - c0)) -v r=$((r1 - r0)) -v t="$TICK" 'BEGIN {printf "%.1f", c * 1000 / t / r}')
bad=$(grep -c '"status":"\(critical\|unknown\)"' "$W/run.log" || true)
kill -TERM "$RUN_PID"; wait "$RUN_PID" || true; RUN_PID=""

say "baseline: the same checks as a monitor.sh round (curl, docker, df, openssl, psql, redis-cli), $ROUNDS rounds"
export PGPASSWORD=demo-db-password
shell_round() {
  curl -fsS --max-time 10 "http://127.0.0.1:$WEB_PORT/api/v1/health" | grep -q '"status":"ok"'
  docker ps --filter "name=$WEB" --filter status=running --format '{{.Names}} {{.Status}}' | grep -q healthy
  df -P / | awk 'NR==2 {sub("%","",$5); exit ($5 >= 80)}'
  openssl x509 -checkend $((14 * 86400)) -noout -in "$W/tls.pem" >/dev/null
  [ "$(psql -qtAX -h 127.0.0.1 -p "$PG_PORT" -U postgres -d psyfit -c 'select count(*) from users')" -ge 1 ]
  [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -a demo-redis-password --no-auth-warning ping)" = PONG ]
}
shell_round # warm-up, and proof the baseline sees a healthy app too
TIMEFORMAT='%U %S'
shell_cpu=$( { time (for _ in $(seq 1 "$ROUNDS"); do shell_round; done) ; } 2>&1 )
shell_ms=$(awk -v u="${shell_cpu% *}" -v s="${shell_cpu#* }" -v r="$ROUNDS" 'BEGIN {printf "%.1f", (u + s) * 1000 / r}')

say "probe check (one process start + one round), $ROUNDS times"
check_cpu=$( { time (for _ in $(seq 1 "$ROUNDS"); do "$PROBE" --config "$W/probe.yaml" check >/dev/null || true; done) ; } 2>&1 )
check_ms=$(awk -v u="${check_cpu% *}" -v s="${check_cpu#* }" -v r="$ROUNDS" 'BEGIN {printf "%.1f", (u + s) * 1000 / r}')

size_mb=$(awk -v b="$(stat -c %s "$PROBE")" 'BEGIN {printf "%.1f", b / 1048576}')
say "results (2 cores; CPU = user + system time)"
printf '%-52s %10s %10s\n' "measure" "value" "vs shell"
printf '%-52s %8s ms %10s\n' "CPU per round, probe run (6 checks)" "$probe_ms" "$(awk -v a="$probe_ms" -v b="$shell_ms" 'BEGIN {printf "%.3fx", a / b}')"
printf '%-52s %8s ms %10s\n' "CPU per round, probe check (incl. process start)" "$check_ms" "$(awk -v a="$check_ms" -v b="$shell_ms" 'BEGIN {printf "%.3fx", a / b}')"
printf '%-52s %8s ms %10s\n' "CPU per round, shell monitor.sh baseline" "$shell_ms" "1x"
printf '%-52s %8s MB\n' "RSS of probe run, max sampled" "$(awk -v k="$max_rss" 'BEGIN {printf "%.1f", k / 1024}')"
printf '%-52s %8s MB\n' "RSS of probe run, peak (VmHWM)" "$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')"
printf '%-52s %8s MB\n' "  of which private memory (RssAnon), at the end" "$(awk -v k="$anon" 'BEGIN {printf "%.1f", k / 1024}')"
printf '%-52s %8s MB\n' "  of which the binary's mapped pages (RssFile)" "$(awk -v k="$filerss" 'BEGIN {printf "%.1f", k / 1024}')"
printf '%-52s %8s MB\n' "probe binary size" "$size_mb"
printf '%-52s %8s\n' "rounds measured / results not ok during the run" "$((r1 - r0)) / $bad"
