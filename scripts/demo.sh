#!/usr/bin/env bash
# make demo: backstop's probe on embedded defaults against a seed-like setup
# on this machine — a web container (built FROM scratch), PostgreSQL, Redis,
# a TLS certificate and the disk — then an outage caught and recovered, with
# the alert mails written as files. Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROBE=$ROOT/bin/probe
W=$(mktemp -d /tmp/backstop-demo.XXXXXX)
chmod 755 "$W"
INTERVAL=2s
source scripts/seed-env.sh
trap cleanup EXIT
seed_up

say "probe config check"
"$PROBE" --config "$W/probe.yaml" config check

say "probe check — everything healthy"
set +e; "$PROBE" --config "$W/probe.yaml" check; code=$?; set -e
echo "exit code $code"

say "probe run — the daemon, checking every 2 s (log: $W/run.log)"
"$PROBE" --config "$W/probe.yaml" run >"$W/run.log" 2>&1 &
RUN_PID=$!
sleep 3

say "Outage: the web container stops"
docker stop -t 1 "$WEB" >/dev/null
set +e; "$PROBE" --config "$W/probe.yaml" check --only web-health,containers; code=$?; set -e
echo "exit code $code (2 = critical)"
wait_for_mail() { # $1 = subject prefix
  for _ in $(seq 1 40); do
    f=$(grep -l "^Subject: $1" "$W"/mail/*.eml 2>/dev/null | head -1) && [ -n "$f" ] && { echo "$f"; return 0; }
    sleep 0.5
  done
  echo "no mail with subject $1 after 20 s; run log:" >&2; tail -20 "$W/run.log" >&2; return 1
}
down=$(wait_for_mail '\[DOWN\]')
echo "After 2 failed rounds (failure_threshold: 2) the probe wrote: $(basename "$down")"
sed -n '1,/^$/p' "$down" | grep -E '^(Subject|To|Date):'
say "curl 127.0.0.1:$METRICS_PORT/metrics (excerpt)"
curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^backstop_check_(status|consecutive_failures)\{check="(web-health|containers)"'

say "Recovery: the container starts again"
docker start "$WEB" >/dev/null
up=$(wait_for_mail '\[RECOVERED\]')
echo "After 2 good rounds (success_threshold: 2) the probe wrote: $(basename "$up")"
echo "----"; cat "$up"; echo "----"
set +e; "$PROBE" --config "$W/probe.yaml" check; code=$?; set -e
echo "exit code $code"

say "Stopping the daemon with SIGTERM"
kill -TERM "$RUN_PID"; wait "$RUN_PID"; echo "probe run exited $?"; RUN_PID=""
echo "mails written: $(ls "$W"/mail/*.eml | wc -l) (one DOWN per container/web incident, one RECOVERED each)"
ls "$W"/mail/*.eml | xargs -n1 basename
say "probe backup — a snapshot: the database dump, the data dir, a manifest; copied to the store in the same pass"
id=$("$PROBE" --config "$W/probe.yaml" backup --notes "demo")
echo "snapshot $id"
"$PROBE" --config "$W/probe.yaml" list
echo "in the store: $(cd "$W/offsite" && find . -type f | sort | tr '\n' ' ')"
say "probe verify $id — checksums, the dump's table of contents, the archive"
"$PROBE" --config "$W/probe.yaml" verify "$id"
say "One flipped byte in the dump: verify names the file and exits 1"
printf '\x00' | dd of="$W/backups/$id/db.dump.zst" bs=1 seek=1000 conv=notrunc status=none
set +e; "$PROBE" --config "$W/probe.yaml" verify "$id"; code=$?; set -e
echo "exit code $code"
echo "rollback log:"; sed 's/^/  /' "$W/rollback.log"

say "Demo done: an outage caught and its recovery reported (mails as files), a snapshot taken, verified, and a corrupted one caught."
