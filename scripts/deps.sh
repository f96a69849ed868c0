#!/usr/bin/env bash
# Installs and starts what the tests and the demo need, on a fresh Debian 12
# machine of ours (root): the Docker engine (docker.io, vfs storage driver),
# redis-server, PostgreSQL 15. Idempotent: a second run only checks.
set -euo pipefail

log() { printf 'deps: %s\n' "$*" >&2; }

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql-15 postgresql-client-15)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing ${missing[*]} and not root: install them with apt-get"; exit 1
  fi
  log "installing ${missing[*]} (Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

sock=/var/run/docker.sock
docker_ok() {
  [ -S "$sock" ] && curl -fsS --max-time 3 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
}
if ! docker_ok; then
  log "starting dockerd (storage driver vfs; log /var/log/backstop-dockerd.log)"
  nohup dockerd --storage-driver=vfs >/var/log/backstop-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do docker_ok && break; sleep 0.5; done
  docker_ok || { log "dockerd did not come up; see /var/log/backstop-dockerd.log"; tail -20 /var/log/backstop-dockerd.log >&2; exit 1; }
fi
log "ready: dockerd $(curl -fsS --unix-socket "$sock" http://localhost/version | sed -n 's/.*"Version":"\([^"]*\)".*/\1/p' | head -1), $(redis-server --version | cut -d' ' -f3), $(/usr/lib/postgresql/15/bin/postgres --version)"
