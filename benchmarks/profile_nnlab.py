"""Where nnlab's training time goes: cProfile of ``fit`` on a benchmark workload.

    python -m benchmarks.profile_nnlab W1 [--epochs 3] [--top 15]

Runs in this process with one BLAS thread (set before NumPy loads), after one warm-up epoch,
and prints the functions by own time with their share of the profiled fit.
"""

from __future__ import annotations

import os

for _k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_k] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402

from benchmarks.trainers import nnlab_trainer  # noqa: E402
from benchmarks.workloads import initial_weights, make_data, trainer_workloads  # noqa: E402


def profile(name: str, epochs: int = 3, top: int = 15) -> list[dict]:
    """Profile ``epochs`` epochs of nnlab on workload ``name``; rows sorted by own time."""
    w = trainer_workloads()[name]
    x, y = make_data(w)
    fit = nnlab_trainer(w, x, y, initial_weights(w))
    fit(1)  # warm-up
    t0 = time.perf_counter()
    fit(epochs)
    plain = time.perf_counter() - t0
    prof = cProfile.Profile()
    prof.enable()
    fit(epochs)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # own times add up to the profiled run
    rows = []
    for (file, line, func), (_cc, ncalls, tt, ct, _callers) in stats.stats.items():
        where = f"{os.path.basename(file)}:{line}" if line else "~"
        rows.append(
            {
                "function": f"{where}({func})",
                "calls": ncalls,
                "own_s": tt,
                "cum_s": ct,
                "own_share": tt / total,
            }
        )
    rows.sort(key=lambda r: -r["own_s"])
    print(
        f"{name}: {epochs} epochs, {epochs * len(x) / plain:,.0f} samples/s unprofiled; "
        f"profiled {total:.2f} s (profiling inflates per-call costs)"
    )
    print(f"  {'own %':>6} {'own s':>7} {'calls':>8}  function")
    for r in rows[:top]:
        print(f"  {100 * r['own_share']:6.1f} {r['own_s']:7.3f} {r['calls']:>8}  {r['function']}")
    return rows[:top]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=("W1", "W2", "W3"))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    profile(args.workload, args.epochs, args.top)


if __name__ == "__main__":
    main()
