#!/usr/bin/env bash
# The main job on embedded defaults: install everything, start a local Label Studio (SQLite, in ./demo_data) and the
# ML backend (gunicorn), write a synthetic sEEG demo patient (BIDS, EDF + events.tsv) and import it with
# `python -m converters.import`, connected to the backend. Then keep both running until Ctrl-C
# (DEMO_DETACH=1: leave them running in the background and return).
# Environment: DEMO_DIR (default demo_data), LABEL_STUDIO_PORT (default 8080), BACKEND_PORT (default 9090),
# DEMO_DETACH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install.sh

DEMO_DIR="${DEMO_DIR:-demo_data}"
PORT="${LABEL_STUDIO_PORT:-8080}"
BACKEND_PORT="${BACKEND_PORT:-9090}"
mkdir -p "$DEMO_DIR"
say() { echo "[demo] $*"; }

# Local credentials, made once and kept out of git (demo_data/ is ignored).
creds="$DEMO_DIR/credentials.env"
if [ ! -f "$creds" ]; then
    token="$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(20))')"
    password="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(12))')"
    printf 'DEMO_USER=demo@localhost\nDEMO_PASSWORD=%s\nDEMO_TOKEN=%s\n' "$password" "$token" > "$creds"
    chmod 600 "$creds"
fi
# shellcheck disable=SC1090
source "$creds"
export LABEL_STUDIO_URL="http://localhost:$PORT" LABEL_STUDIO_API_KEY="$DEMO_TOKEN"

pid_file="$DEMO_DIR/label-studio.pid"
if curl -sf "$LABEL_STUDIO_URL/health" >/dev/null 2>&1; then
    say "Label Studio already answers at $LABEL_STUDIO_URL"
else
    say "starting Label Studio at $LABEL_STUDIO_URL (the first start runs migrations: about a minute)"
    # ML_BLOCK_LOCAL_IP / SSRF_PROTECTION_ENABLED: let the server reach an ML backend on localhost.
    # fflag_..._predictions_import: pushing a ranking recounts only its tasks, not the whole project (see README).
    ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short=true setsid .venv-ls/bin/label-studio start \
        --data-dir "$DEMO_DIR/label-studio" -p "$PORT" --host "$LABEL_STUDIO_URL" --no-browser \
        --username "$DEMO_USER" --password "$DEMO_PASSWORD" --user-token "$DEMO_TOKEN" \
        --enable-legacy-api-token > "$DEMO_DIR/label-studio.log" 2>&1 &
    echo $! > "$pid_file"
    for _ in $(seq 1 300); do
        curl -sf "$LABEL_STUDIO_URL/health" >/dev/null 2>&1 && break
        kill -0 "$(cat "$pid_file")" 2>/dev/null || { tail -n 30 "$DEMO_DIR/label-studio.log"; exit 1; }
        sleep 1
    done
    curl -sf "$LABEL_STUDIO_URL/health" >/dev/null || { say "Label Studio did not start"; exit 1; }
fi

backend_url="http://localhost:$BACKEND_PORT"
backend_pid_file="$DEMO_DIR/backend.pid"
if curl -sf "$backend_url/health" >/dev/null 2>&1; then
    say "the ML backend already answers at $backend_url"
else
    say "starting the ML backend at $backend_url"
    MODEL_DIR="$DEMO_DIR/models" WINDOW_STORE_DIR="$DEMO_DIR/window_stores" \
        setsid .venv/bin/gunicorn --bind "127.0.0.1:$BACKEND_PORT" --workers 1 --threads 4 'ls_backend.wsgi:app' \
        > "$DEMO_DIR/backend.log" 2>&1 &
    echo $! > "$backend_pid_file"
    for _ in $(seq 1 60); do
        curl -sf "$backend_url/health" >/dev/null 2>&1 && break
        sleep 1
    done
    curl -sf "$backend_url/health" >/dev/null || { tail -n 30 "$DEMO_DIR/backend.log"; exit 1; }
fi

recording_dir="$DEMO_DIR/bids"
if [ ! -d "$recording_dir/sub-demo" ]; then
    say "writing a 10-minute synthetic sEEG recording (patient profile A) to $recording_dir"
    .venv/bin/python -m converters.synthetic --patient A --duration 600 --format bids --subject demo \
        --out "$recording_dir"
fi

say "importing it: python -m converters.import $recording_dir --patient DEMO"
.venv/bin/python -m converters.import "$recording_dir" --patient DEMO --max-windows 300 \
    --store-dir "$DEMO_DIR/window_stores" --backend-url "$backend_url"

say "open $LABEL_STUDIO_URL and log in as $DEMO_USER / $DEMO_PASSWORD (also in $creds)"
if [ "${DEMO_DETACH:-0}" = "1" ] || [ ! -f "$pid_file" ]; then
    exit 0
fi
say "Label Studio and the backend keep running; Ctrl-C stops them"
trap 'kill -- -"$(cat "$pid_file")" -"$(cat "$backend_pid_file" 2>/dev/null)" 2>/dev/null; rm -f "$pid_file" "$backend_pid_file"' INT TERM
wait
