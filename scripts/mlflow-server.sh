#!/usr/bin/env bash
# An MLflow tracking server on 127.0.0.1, for trying `tracking=server` and for the cluster tests.
# Runs and artifacts both go through the server (proxied artifact store): jobs need no shared
# mlruns/ directory, only the URI.
#
#   scripts/mlflow-server.sh start    # waits until it answers; prints tracking.uri=...
#   scripts/mlflow-server.sh status   # exit 0 running, 1 stopped
#   scripts/mlflow-server.sh uri      # its tracking URI (http://127.0.0.1:PORT)
#   scripts/mlflow-server.sh stop
#
# Environment: MLFLOW_PORT (default: 5000 if it is free, else a free port; the port picked is
# kept in $NNLAB_SERVICES/mlflow.port for status, uri and stop), NNLAB_SERVICES (default
# /tmp/nnlab-services), PYTHON (default python). Store, artifacts, log and PID:
# $NNLAB_SERVICES/mlflow-$PORT. It listens on 127.0.0.1 only; for a server that cluster nodes
# reach (a login node), see docs/cluster.md.
set -euo pipefail

BASE="${NNLAB_SERVICES:-/tmp/nnlab-services}"
PORT_FILE="$BASE/mlflow.port"
PY="${PYTHON:-python}"

die() { echo "mlflow-server: $*" >&2; exit "${2:-1}"; }

use_port() {  # use_port PORT: the server's port, directory and URI from here on
    PORT=$1
    DIR="$BASE/mlflow-$PORT"
    URI="http://127.0.0.1:$PORT"
}

# MLFLOW_PORT, else the port this script started its server on, else the conventional 5000
use_port "${MLFLOW_PORT:-$(cat "$PORT_FILE" 2>/dev/null || echo 5000)}"

free_port() {  # free_port [PORT]: PORT if nothing holds 127.0.0.1:PORT, else one that is free
    "$PY" - "${1:-0}" <<'PYEOF'
import socket, sys
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PYEOF
}

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
    if [ -z "${MLFLOW_PORT:-}" ]; then  # 5000 unless something holds it
        use_port "$(free_port 5000)"
    elif healthy; then
        die "something else answers at $URI; pick another port (MLFLOW_PORT=5001 $0 start)"
    fi
    mkdir -p "$DIR/artifacts"
    [ -n "${MLFLOW_PORT:-}" ] || echo "$PORT" >"$PORT_FILE"
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
    uri) echo "$URI" ;;
    status)
        if alive && healthy; then
            echo "mlflow-server: running (pid $(cat "$DIR/server.pid")); tracking.uri=$URI"
        else
            echo "mlflow-server: stopped"
            exit 1
        fi
        ;;
    *) die "usage: $0 start|stop|status|uri" 2 ;;
esac
