"""Benchmark subprocess: ``python -m benchmarks.worker '<json spec>'`` prints one JSON line.

The parent (benchmarks.run) pins this process to one core and sets one BLAS / XLA / torch thread,
so each system is measured alone under the same conditions. Kinds of spec:

- ``{"kind": "train", "system": "nnlab", "workload": {...}, "epochs": 2, "repeats": 5}``:
  build the model, one warm-up epoch (JIT compile, buffers, caches), then ``repeats`` timed
  ``fit(epochs)`` calls; samples/s per repeat. With ``"gemm_share": true`` each repeat is
  followed by the same epochs' GEMMs alone (paired under the same machine load), giving the
  share of the training time spent outside the matrix multiplies.
- ``{"kind": "serve", "system": ..., "workload": {...}, "gemm_share": ...}``: the same, but
  the parent asks for one repeat at a time over stdin (interleaving the systems).
- ``{"kind": "matmul", "workload": {...}, "repeats": 7}``: the same GEMMs as one training
  epoch (forward, weight gradients and hidden-layer input gradients), alone in NumPy.
- ``{"kind": "stacking", "contender": ...}`` (served) and ``{"kind": "stacking_crossover", ...}``:
  the stacking section's contenders and crossover cells (``benchmarks/stacking.py``).
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


class Session:
    """One system on one workload, built and warmed up, ready for timed repeats."""

    def __init__(self, spec: dict) -> None:
        from benchmarks.trainers import TRAINERS
        from benchmarks.workloads import Workload, initial_weights, make_data

        w = Workload.from_dict(spec["workload"])
        x, y = make_data(w)
        ws = initial_weights(w)
        self.gemms = gemm_epoch(w) if spec.get("gemm_share") else None
        self.n = len(x)
        t0 = time.perf_counter()
        self.fit = TRAINERS[spec["system"]](w, x, y, ws)
        self.build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.first_loss = self.fit(1)  # warm-up epoch: compile / allocate, not timed
        self.warmup_s = time.perf_counter() - t0

    def info(self) -> dict:
        return {
            "build_s": self.build_s,
            "warmup_epoch_s": self.warmup_s,
            "first_epoch_loss": self.first_loss,
            "n_samples": self.n,
            "blas": blas_info(),
        }

    def repeat(self, epochs: int) -> dict:
        """One timed ``fit(epochs)``; then, paired under the same load, the same GEMMs alone."""
        t0 = time.perf_counter()
        loss = self.fit(epochs)
        t_fit = time.perf_counter() - t0
        out = {"rate": epochs * self.n / t_fit, "loss": loss}
        if self.gemms is not None:
            t0 = time.perf_counter()
            for _ in range(epochs):
                self.gemms()
            out["outside_gemm_share"] = 1.0 - (time.perf_counter() - t0) / t_fit
        return out


def train(spec: dict) -> dict:
    """Build, warm up, then ``repeats`` timed repeats in this one process."""
    from benchmarks.common import summarize

    session = Session(spec)
    k = int(spec["epochs"])
    reps = [session.repeat(k) for _ in range(int(spec["repeats"]))]
    s = summarize([r["rate"] for r in reps])
    out = {
        "samples_per_s": s,
        "epoch_s": session.n / s["median"],
        **session.info(),
        "last_epoch_loss": reps[-1]["loss"],
        "epochs_per_repeat": k,
    }
    if session.gemms is not None:
        out["outside_gemm_share"] = summarize([r["outside_gemm_share"] for r in reps])
    return out


def serve(spec: dict) -> None:
    """Build and warm up, print ``{"ready": ...}``, then answer one JSON line per request
    (``{"epochs": k}`` -> one timed repeat) until stdin closes. The parent interleaves the
    systems' repeats this way, so bursts of load from other processes hit all of them alike."""
    session = Session(spec)
    _reply({"ready": True, **session.info()})
    for line in sys.stdin:
        if line.strip():
            _reply(session.repeat(int(json.loads(line)["epochs"])))


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


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


def stacking_crossover(spec: dict) -> dict:
    from benchmarks.stacking import crossover

    return crossover(spec)


def stacking_serve(spec: dict) -> None:
    from benchmarks.stacking import serve as serve_contender

    serve_contender(spec)


KINDS = {
    "train": train,
    "matmul": matmul,
    "tracking_phases": tracking_phases,
    "stacking_crossover": stacking_crossover,
    "blas": lambda spec: {"blas": blas_info()},
}
# kinds that answer one request per stdin line (WorkerServer) instead of printing one result
SERVERS = {"serve": serve, "stacking": stacking_serve}


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec["kind"] in SERVERS:
        SERVERS[spec["kind"]](spec)
        return
    result = KINDS[spec["kind"]](spec)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
