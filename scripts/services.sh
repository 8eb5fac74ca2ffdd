#!/usr/bin/env bash
# Start PostgreSQL and Redis on this machine if they are not answering, and make sure the database exists.
# Used by `make run`, `make test` and .ci/run. On a docker-compose deployment the services are containers instead.
set -euo pipefail

PGHOST="${POSTGRES_HOST:-127.0.0.1}"
PGPORT="${POSTGRES_PORT:-5432}"
PGUSER="${POSTGRES_USER:-postgres}"
PGDB="${POSTGRES_DB:-finetune}"
REDIS_PORT="${REDIS_PORT:-6379}"

pg_ready() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

if ! pg_ready; then
    echo "starting PostgreSQL"
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start || true
    fi
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || { echo "error: PostgreSQL is not answering on $PGHOST:$PGPORT" >&2; exit 1; }
fi

if ! redis_ready; then
    echo "starting Redis"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do redis_ready && break; sleep 0.5; done
    redis_ready || { echo "error: Redis is not answering on 127.0.0.1:$REDIS_PORT" >&2; exit 1; }
fi

# The role needs CREATEDB for the test database (it is the superuser `postgres` by default).
if ! psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -tAc "SELECT 1 FROM pg_database WHERE datname='$PGDB'" postgres \
        | grep -q 1; then
    echo "creating database $PGDB"
    createdb -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" "$PGDB"
fi
echo "services ready: PostgreSQL $PGHOST:$PGPORT/$PGDB, Redis 127.0.0.1:$REDIS_PORT"
