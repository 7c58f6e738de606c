#!/usr/bin/env bash
# Measure what the SLURM launcher costs against joblib on this machine (docs/cluster.md):
#   1. overhead per trial: N trivial trials (1 epoch, tiny data); what a trial costs beyond its
#      training = sweep time * 2 slots / N - mean training time, for SLURM and joblib n_jobs=2
#      (SLURM: a job, a Python process and its imports per trial; joblib: reused workers);
#   2. the wall time of a 24-trial sweep (flagship data, 20 epochs) on both.
# Both track on the same MLflow server; needs scripts/local-slurm.sh and scripts/mlflow-server.sh
# running (it starts neither). Runs in a temp dir; prints a Markdown table.
#   scripts/measure-cluster.sh [N]     # N trivial trials, default 24
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
N="${1:-24}"
URI="$("$ROOT/scripts/mlflow-server.sh" uri)"
eval "$("$ROOT/scripts/local-slurm.sh" env)"
"$ROOT/scripts/local-slurm.sh" status >/dev/null || { echo "start scripts/local-slurm.sh first" >&2; exit 1; }
"$ROOT/scripts/mlflow-server.sh" status >/dev/null || { echo "start scripts/mlflow-server.sh first" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT  # kept when a sweep fails (below), to look at its job dirs
cd "$WORK"
TAG="m$(date +%s)"
LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"

seeds=$(seq -s, 0 $((N - 1)))
TRIVIAL=(data.n_samples=200 "model.hidden=[8]" epochs=1 "seed=$seeds")
STUDY=(data.n_samples=800 data.noise=0.25 "model.hidden=[16,16]" epochs=20
    lr=0.1,0.03,0.01 batch_size=16,64 seed=0,1,2,3)

sweep() {  # sweep NAME LAUNCHER... -- ARGS...: prints "wall sweep trials_total"
    local name=$1; shift
    local launcher=()
    while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
    shift
    local t0 t1 out
    t0=$(date +%s.%N)
    out=$(python -m nnlab.run -m tracking=server "tracking.uri=$URI" "experiment_name=$TAG-$name" \
        "${launcher[@]}" "$@" 2>&1) || {
        echo "$out" >&2
        trap - EXIT
        echo "the $name sweep failed; its files: $WORK" >&2
        exit 1
    }
    t1=$(date +%s.%N)
    local sweep_s train_s
    sweep_s=$(echo "$out" | sed -n 's/.* trials in \([0-9.]*\)s$/\1/p')
    train_s=$(python -c '
import glob, json
records = [json.load(open(p)) for p in glob.glob("multirun/*/*/.nnlab/*/job*.json")]
print(sum(r["train_s"] or 0 for r in records) / len(records))')
    rm -rf multirun .nnlab
    echo "$(echo "$t1 - $t0" | bc) $sweep_s $train_s"
}

SLURM=(hydra/launcher=slurm "hydra.launcher.name=$TAG")
JOBLIB=(hydra/launcher=joblib hydra.launcher.n_jobs=2)
read -r sw ss st < <(sweep slurm-trivial "${SLURM[@]}" -- "${TRIVIAL[@]}")
read -r jw js jt < <(sweep joblib-trivial "${JOBLIB[@]}" -- "${TRIVIAL[@]}")
read -r sw24 ss24 _ < <(sweep slurm-24 "${SLURM[@]}" -- "${STUDY[@]}")
read -r jw24 js24 _ < <(sweep joblib-24 "${JOBLIB[@]}" -- "${STUDY[@]}")
per() { python -c "print(f'{$1 * 2 / $N:.2f} s - {$2:.2f} s = {$1 * 2 / $N - $2:.2f} s')"; }
f() { python -c "print(f'{$1:.1f} s ({$2:.1f} s)')"; }
echo "| measured $(date -u +%F), load average before: $LOAD | SLURM (1 node, 2 CPUs) | joblib n_jobs=2 |"
echo "|---|---|---|"
echo "| $N trivial trials: sweep after set-up | $ss s | $js s |"
echo "| per trial and slot - training = overhead | $(per "$ss" "$st") | $(per "$js" "$jt") |"
echo "| 24-trial sweep: wall (sweep after set-up) | $(f "$sw24" "$ss24") | $(f "$jw24" "$js24") |"
