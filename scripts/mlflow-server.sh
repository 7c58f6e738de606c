#!/usr/bin/env bash
# An MLflow tracking server on 127.0.0.1, for trying `tracking=server` and for the cluster tests.
# Runs and artifacts both go through the server (proxied artifact store): jobs need no shared
# mlruns/ directory, only the URI.
#
#   scripts/mlflow-server.sh start    # waits until it answers; prints tracking.uri=...
#   scripts/mlflow-server.sh status   # exit 0 running, 1 stopped
#   scripts/mlflow-server.sh stop
#
# Environment: MLFLOW_PORT (default 5000), NNLAB_SERVICES (default /tmp/nnlab-services),
# PYTHON (default python). Store, artifacts, log and PID: $NNLAB_SERVICES/mlflow-$MLFLOW_PORT.
# For a server that cluster nodes reach (a login node), see docs/cluster.md: this one listens
# on loopback only.
set -euo pipefail

PORT="${MLFLOW_PORT:-5000}"
DIR="${NNLAB_SERVICES:-/tmp/nnlab-services}/mlflow-$PORT"
PY="${PYTHON:-python}"
URI="http://127.0.0.1:$PORT"

die() { echo "mlflow-server: $*" >&2; exit "${2:-1}"; }

alive() { [ -s "$DIR/server.pid" ] && kill -0 "$(cat "$DIR/server.pid")" 2>/dev/null; }

healthy() {
    if command -v curl >/dev/null; then  # a Python per check costs seconds on a busy machine
        curl -sf -m 2 -o /dev/null "$URI/health"
        return
    fi
    "$PY" - "$URI/health" <<'EOF' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
EOF
}

do_start() {
    if alive; then
        echo "mlflow-server: already running (pid $(cat "$DIR/server.pid")); tracking.uri=$URI"
        return 0
    fi
    if healthy; then
        die "something else answers at $URI; pick another port (MLFLOW_PORT=5001 $0 start)"
    fi
    mkdir -p "$DIR/artifacts"
    # --workers 1 and no job execution: one small process, nothing started behind our back.
    # setsid: the server and its workers form one process group, stopped together.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$PY" -m mlflow server \
        --host 127.0.0.1 --port "$PORT" --workers 1 \
        --backend-store-uri "sqlite:///$DIR/mlflow.db" \
        --artifacts-destination "$DIR/artifacts" --serve-artifacts \
        >"$DIR/server.log" 2>&1 </dev/null &
    echo $! >"$DIR/server.pid"
    for _ in $(seq 600); do
        healthy && break
        alive || die "the server exited; see $DIR/server.log"
        sleep 0.1
    done
    healthy || die "no answer at $URI after 60 s; see $DIR/server.log"
    echo "mlflow-server: running (pid $(cat "$DIR/server.pid")); tracking.uri=$URI"
    echo "  store: $DIR   stop it: $0 stop"
}

do_stop() {
    if ! alive; then
        rm -f "$DIR/server.pid"
        echo "mlflow-server: not running"
        return 0
    fi
    local pid
    pid=$(cat "$DIR/server.pid")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$DIR/server.pid"
    echo "mlflow-server: stopped"
}

case "${1:-}" in
    start) do_start ;;
    stop) do_stop ;;
    status)
        if alive && healthy; then
            echo "mlflow-server: running (pid $(cat "$DIR/server.pid")); tracking.uri=$URI"
        else
            echo "mlflow-server: stopped"
            exit 1
        fi
        ;;
    *) die "usage: $0 start|stop|status" 2 ;;
esac
