#!/usr/bin/env bash
# Bring the whole platform up on this machine: install, start PostgreSQL/Redis if needed, migrate, collect static
# files, create the first administrator, then start the web tier (`python -m finetune.serve`: one daphne process per
# core on one socket, HTTP + websockets, pooled database connections), three Celery workers (`training`:
# one job at a time; `inference`: playground generation, keeps models loaded; `default`: everything else) and
# Celery beat in the background. Logs and pids go to var/.
# Stop with `make stop`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f .env ] && { set -a; . ./.env; set +a; }
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
PY="$ROOT/.venv/bin/python"
RUN="$ROOT/var/run"
LOG="$ROOT/var/log"

bash scripts/install.sh
. scripts/load_secrets.sh  # production settings unless DEBUG=1 (secrets: var/secrets.env on first start)
bash scripts/services.sh
mkdir -p "$RUN" "$LOG"
bash scripts/stop.sh >/dev/null 2>&1 || true

printf '\n==> migrating the database\n'
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
printf '\n==> administrator\n'
"$PY" manage.py ensure_admin

start() {  # name, command...
    local name="$1"; shift
    setsid nohup "$@" >>"$LOG/$name.log" 2>&1 < /dev/null &
    echo $! > "$RUN/$name.pid"
}
export SITE_URL="${SITE_URL:-http://$HOST:$PORT}"
start web "$PY" -m finetune.serve --host "$HOST" --port "$PORT"
start worker-training "$PY" -m celery -A finetune worker -Q training -c 1 -n "training@%h" -l INFO
start worker-default "$PY" -m celery -A finetune worker -Q default -c 2 -n "default@%h" -l INFO
start worker-inference "$PY" -m celery -A finetune worker -Q inference -c 1 -n "inference@%h" -l INFO
start beat "$PY" -m celery -A finetune beat -s "$RUN/celerybeat-schedule" -l INFO

for _ in $(seq 1 60); do
    if curl -fsS "http://$HOST:$PORT/api/health/" >/dev/null 2>&1; then break; fi
    sleep 1
done
for _ in $(seq 1 30); do
    workers="$(curl -sS "http://$HOST:$PORT/api/health/" 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("workers", 0))' 2>/dev/null || echo 0)"
    [ "${workers:-0}" -ge 2 ] && break
    sleep 1
done
printf '\n==> health: %s\n' "$(curl -sS "http://$HOST:$PORT/api/health/" || echo 'web server not answering; see var/log/web.log')"
cat <<MSG

finetune is running.
  Web app:      http://$HOST:$PORT/        (sign up there)
  Admin:        http://$HOST:$PORT/admin/  (the administrator above)
  API docs:     http://$HOST:$PORT/api/docs/
  Logs:         var/log/{web,worker-training,worker-default,worker-inference,beat}.log
  Stop:         make stop
MSG
