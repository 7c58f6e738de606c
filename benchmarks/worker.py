"""Benchmark subprocess: ``python -m benchmarks.worker '<json spec>'`` prints one JSON line.

The parent (benchmarks.run) pins this process to one core and sets one BLAS / XLA / torch thread,
so each system is measured alone under the same conditions. Kinds of spec:

- ``{"kind": "train", "system": "nnlab", "workload": {...}, "epochs": 2, "repeats": 5}``:
  build the model, one warm-up epoch (JIT compile, buffers, caches), then ``repeats`` timed
  ``fit(epochs)`` calls; samples/s per repeat. With ``"gemm_share": true`` each repeat is
  followed by the same epochs' GEMMs alone (paired under the same machine load), giving the
  share of the training time spent outside the matrix multiplies.
- ``{"kind": "matmul", "workload": {...}, "repeats": 7}``: the same GEMMs as one training
  epoch (forward, weight gradients and hidden-layer input gradients), alone in NumPy.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from itertools import pairwise

import numpy as np


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("internal_api", "version", "num_threads", "architecture", "threading_layer", "prefix")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


def train(spec: dict) -> dict:
    from benchmarks.common import summarize
    from benchmarks.trainers import TRAINERS
    from benchmarks.workloads import Workload, initial_weights, make_data

    w = Workload.from_dict(spec["workload"])
    x, y = make_data(w)
    ws = initial_weights(w)
    gemms = gemm_epoch(w) if spec.get("gemm_share") else None
    t0 = time.perf_counter()
    fit = TRAINERS[spec["system"]](w, x, y, ws)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first_loss = fit(1)  # warm-up epoch: compile / allocate, excluded from the rates
    warmup_s = time.perf_counter() - t0
    k, n = int(spec["epochs"]), len(x)
    rates, shares, loss = [], [], first_loss
    for _ in range(int(spec["repeats"])):
        t0 = time.perf_counter()
        loss = fit(k)
        t_fit = time.perf_counter() - t0
        rates.append(k * n / t_fit)
        if gemms is not None:  # paired: the same GEMMs right after, under the same load
            t0 = time.perf_counter()
            for _ in range(k):
                gemms()
            shares.append(1.0 - (time.perf_counter() - t0) / t_fit)
    s = summarize(rates)
    out = {
        "samples_per_s": s,
        "epoch_s": n / s["median"],
        "build_s": build_s,
        "warmup_epoch_s": warmup_s,
        "first_epoch_loss": first_loss,
        "last_epoch_loss": loss,
        "n_samples": n,
        "epochs_per_repeat": k,
        "blas": blas_info(),
    }
    if shares:
        out["outside_gemm_share"] = summarize(shares)
    return out


def gemm_epoch(w) -> Callable[[], None]:
    """A function doing exactly the GEMMs of one training epoch of ``w`` (float32, NumPy):
    per batch, forward ``a[i] @ W[i]``, weight gradients ``a[i].T @ d[i+1]`` and hidden-layer
    input gradients ``d[i+1] @ W[i].T`` (none for the input), into preallocated buffers."""
    rng = np.random.default_rng(0)
    units, n, bs = w.layers, w.n_samples, w.batch_size
    weights = [rng.standard_normal((a, b)).astype(np.float32) for a, b in pairwise(units)]
    sizes = [bs] * (n // bs) + ([n % bs] if n % bs else [])

    def buffers(b: int):
        acts = [rng.standard_normal((b, u)).astype(np.float32) for u in units]
        deltas = [np.full((b, u), 0.01, np.float32) for u in units]
        grads = [np.empty_like(W) for W in weights]
        return acts, deltas, grads

    bufs = {b: buffers(b) for b in set(sizes)}
    n_layers = len(weights)

    def epoch() -> None:
        for b in sizes:
            acts, deltas, grads = bufs[b]
            for i in range(n_layers):  # forward
                np.matmul(acts[i], weights[i], out=acts[i + 1])
            for i in reversed(range(n_layers)):  # backward
                np.matmul(acts[i].T, deltas[i + 1], out=grads[i])
                if i > 0:
                    np.matmul(deltas[i + 1], weights[i].T, out=deltas[i])

    epoch()  # touch the buffers once
    return epoch


def matmul(spec: dict) -> dict:
    """The GEMMs of one epoch alone: the hardware bound of the workload's samples/s."""
    from benchmarks.common import summarize
    from benchmarks.workloads import Workload

    w = Workload.from_dict(spec["workload"])
    epoch = gemm_epoch(w)
    n, units = w.n_samples, w.layers
    times = []
    for _ in range(int(spec["repeats"])):
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    s = summarize([n / t for t in times])
    fwd = sum(2 * n * a * c for a, c in pairwise(units))
    flops = 3 * fwd - 2 * n * units[0] * units[1]  # fwd + dW + dX, no gradient for the input
    return {
        "samples_per_s": s,
        "epoch_s": n / s["median"],
        "gemms_per_step": 3 * (len(units) - 1) - 1,
        "gflops": flops / (n / s["median"]) / 1e9,
        "blas": blas_info(),
    }


def tracking_phases(spec: dict) -> dict:
    from benchmarks.tracking_cost import phases

    return phases(spec)


KINDS = {
    "train": train,
    "matmul": matmul,
    "tracking_phases": tracking_phases,
    "blas": lambda spec: {"blas": blas_info()},
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    result = KINDS[spec["kind"]](spec)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
