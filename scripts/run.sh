#!/usr/bin/env bash
# The run command (README): sets up on first use, then runs the web console, a Celery worker
# and the Celery beat scheduler together on the embedded defaults (SQLite under var/, a
# broker in var/broker that needs no server). Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
PORT=${PORT:-8000}
BIND=${BIND:-127.0.0.1}

python manage.py migrate --noinput
python manage.py collectstatic --noinput -v0
python manage.py ensure_superuser
# Refuse several web processes counting logins and Detects each in its own memory.
python manage.py check --deploy --tag caches --fail-level ERROR

pids=()
stop() {
    trap - INT TERM EXIT
    kill "${pids[@]}" 2>/dev/null || true
    # A worker still starting up can miss the first TERM: give all three 15 s, then insist.
    for _ in $(seq 30); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.5
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop INT TERM EXIT

# Workers and threads: WEB_CONCURRENCY (default 1, so the in-memory cache is shared by all
# requests) and WEB_THREADS (default 8), read by aamail/webserver.py.
gunicorn -c python:aamail.webserver aamail.wsgi --bind "$BIND:$PORT" &
pids+=($!)
celery -A aamail worker -Q celery,fetch --concurrency "${WORKERS:-4}" --loglevel INFO &
pids+=($!)
celery -A aamail beat --loglevel INFO --schedule "${VAR_DIR:-var}/celerybeat-schedule" &
pids+=($!)
echo "AAMail console: http://$BIND:$PORT/  (Ctrl-C stops web, worker and beat)"
echo "Office mail service: in another terminal, as root, .venv/bin/python manage.py mailserver"
wait -n
