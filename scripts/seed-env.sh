# Sourced by demo.sh and measure-probe.sh: a seed-like app on this machine —
# a web container built FROM scratch, PostgreSQL 15, Redis with a password, a
# TLS certificate — and a probe config for it in $W/probe.yaml.
# Needs: ROOT (the repo), W (a work dir, mode 755), INTERVAL (check interval).
PGBIN=/usr/lib/postgresql/15/bin
WEB=demo-psyfit-web-$$
PG_PORT=$((20000 + RANDOM % 20000)); REDIS_PORT=$((PG_PORT + 1)); WEB_PORT=$((PG_PORT + 2)); METRICS_PORT=$((PG_PORT + 3))
RUN_PID=""

say()  { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
  [ -n "$RUN_PID" ] && kill "$RUN_PID" 2>/dev/null && wait "$RUN_PID" 2>/dev/null || true
  docker rm -f "$WEB" >/dev/null 2>&1 || true
  [ -f "$W/redis.pid" ] && kill "$(cat "$W/redis.pid")" 2>/dev/null || true
  [ -d "$W/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$W"
}

seed_up() {
say "Starting a seed-like app: web container, PostgreSQL, Redis (work dir $W)"
mkdir -p "$W/img"
CGO_ENABLED=0 go build -trimpath -o "$W/img/webapp" ./shared/testenv/images/webapp
cat >"$W/img/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY webapp /webapp
HEALTHCHECK --interval=1s --timeout=1s --retries=2 CMD ["/webapp", "-healthcheck", "http://127.0.0.1:3000/up"]
ENTRYPOINT ["/webapp"]
DOCKERFILE
docker build -q -t backstop-demo/webapp:latest "$W/img" >"$W/build.log" 2>&1 || { cat "$W/build.log" >&2; return 1; }
docker run -d --name "$WEB" -p "127.0.0.1:$WEB_PORT:3000" \
  backstop-demo/webapp:latest >/dev/null
echo "web container $WEB on 127.0.0.1:$WEB_PORT"

mkdir -p "$W/pg" "$W/pgrun" && chown postgres "$W/pg" "$W/pgrun"
echo demo-db-password >"$W/pgpw" && chown postgres "$W/pgpw"
runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg" -U postgres --pwfile="$W/pgpw" -A scram-sha-256 --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -l "$W/pgrun/pg.log" -w \
  -o "-p $PG_PORT -k $W/pgrun -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
export PGPASSWORD=demo-db-password
psql -qX -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE psyfit" >/dev/null
psql -qX -h 127.0.0.1 -p "$PG_PORT" -U postgres -d psyfit >/dev/null <<'SQL'
CREATE TABLE users (id serial PRIMARY KEY, email text);
INSERT INTO users (email) VALUES ('doctor@example.jp');
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('0042_add_visits');
SQL
echo "PostgreSQL 15 on 127.0.0.1:$PG_PORT (database psyfit, 1 user, alembic 0042_add_visits)"

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass demo-redis-password --save '' --appendonly no \
  --daemonize yes --pidfile "$W/redis.pid" --dir "$W" --logfile "$W/redis.log"
echo "Redis on 127.0.0.1:$REDIS_PORT (password set)"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 60 -subj /CN=psytech.demo \
  -addext subjectAltName=DNS:psytech.demo -keyout "$W/tls.key" -out "$W/tls.pem" 2>/dev/null
echo "TLS certificate for psytech.demo, 60 days left"

mkdir -p "$W/appdata/uploads/2026" && echo "patient record" >"$W/appdata/uploads/2026/カルテ.txt" && head -c 2000000 /dev/urandom >"$W/appdata/uploads/scan.bin"
cat >"$W/probe.yaml" <<YAML
host: psyfit-demo
timezone: Asia/Tokyo
state_dir: $W/state
listen: 127.0.0.1:$METRICS_PORT
checks:
  - {name: web-health, type: http, url: "http://127.0.0.1:$WEB_PORT/api/v1/health",
     conditions: ["[STATUS] == 200", "[BODY].status == ok", "[RESPONSE_TIME] < 2000"], interval: $INTERVAL, timeout: 1s}
  - {name: containers, type: container, containers: [$WEB], interval: $INTERVAL, timeout: $INTERVAL}
  - {name: disk, type: disk, paths: [/], interval: $INTERVAL, timeout: $INTERVAL}
  - {name: tls, type: tls, cert_file: $W/tls.pem, ca_file: $W/tls.pem, server_name: psytech.demo, interval: $INTERVAL, timeout: $INTERVAL}
  - {name: db, type: postgres, dsn: "\${DATABASE_URL}", min_rows: {users: 1}, migration_revision: 0042_add_visits, interval: $INTERVAL, timeout: $INTERVAL}
  - {name: redis, type: redis, address: "127.0.0.1:$REDIS_PORT", password: "\${REDIS_PASSWORD}", interval: $INTERVAL, timeout: $INTERVAL}
store: {dir: $W/offsite}
backup: {dir: $W/backups, data_dir: $W/appdata, retention: {count: 3}}
rollback: {log: $W/rollback.log}
alerts:
  to: [ops@example.jp]
  from: noreply@psytech.demo
  locale: en
  via: dir
  dir: $W/mail
  failure_threshold: 2
  success_threshold: 2
YAML
export DATABASE_URL="postgres://postgres:demo-db-password@127.0.0.1:$PG_PORT/psyfit?sslmode=disable"
export REDIS_PASSWORD=demo-redis-password
unset PGPASSWORD
}
