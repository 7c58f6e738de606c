"""What ``trainer.noise_scale=true`` costs: ``fit`` with and without ``GradientNoiseScale``.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.noise_scale [--rounds 15]

Workloads: the studies' networks (16-16 ReLU MLP) on noisy two moons (640 training samples) and
digits (1437), at batch sizes 16, 64 and 256, 20 epochs with validation; plus a wider 256-256
network on digits, where a step's matrix products dominate. Each round times one fit without the
callback and one with it, in alternating order, so bursts of load from other processes hit both
alike; the overhead is the median over rounds of (with / without) - 1. Times are the process's
CPU time (a shared machine's waits for a core are not counted) with one BLAS thread, as a
parallel sweep's trials run. Prints a table and writes ``benchmarks/results/noise_scale.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.common import RESULTS, git_commit, machine_info

WORKLOADS = [  # (dataset, data params, hidden widths, batch size)
    *(
        (name, params, (16, 16), bs)
        for name, params in (("moons", {"n_samples": 800, "noise": 0.25}), ("digits", {}))
        for bs in (16, 64, 256)
    ),  # fmt: skip
    ("digits", {}, (256, 256), 64),
]
EPOCHS = 20


def _fit(data, hidden, batch_size: int, measure: bool) -> float:
    from nnlab import nn

    out = nn.Dense(1, "sigmoid") if data.n_classes == 2 else nn.Dense(data.n_classes, "softmax")
    layers = [nn.Dense(hidden[0], "relu", input_dim=data.n_features)]
    model = nn.Sequential([*layers, *(nn.Dense(h, "relu") for h in hidden[1:]), out], seed=0)
    loss = "binary_crossentropy" if data.n_classes == 2 else "sparse_categorical_crossentropy"
    model.compile(nn.Adam(1e-3), loss, metrics=["accuracy"])
    callbacks = [nn.GradientNoiseScale()] if measure else None
    t0 = time.process_time()  # CPU time: a busy machine's waits are not counted
    model.fit(data.x_train, data.y_train, batch_size=batch_size, epochs=EPOCHS,
              validation_data=(data.x_val, data.y_val), callbacks=callbacks)  # fmt: skip
    return time.process_time() - t0


def measure(rounds: int) -> list[dict]:
    """One row per workload: median seconds off and on, median paired overhead and its range."""
    from threadpoolctl import threadpool_limits

    from nnlab.data import load_dataset

    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for name, params, hidden, bs in WORKLOADS:
            data = load_dataset(name, **params)
            _fit(data, hidden, bs, True)  # warm-up: buffers, caches
            off, on = [], []
            for r in range(rounds):
                order = (False, True) if r % 2 == 0 else (True, False)
                times = {m: _fit(data, hidden, bs, m) for m in order}
                off.append(times[False])
                on.append(times[True])
            ratios = sorted(b / a - 1 for a, b in zip(off, on, strict=True))
            rows.append({
                "dataset": name, "hidden": list(hidden), "batch_size": bs, "epochs": EPOCHS,
                "steps": EPOCHS * -(-len(data.x_train) // bs),
                "off_s": statistics.median(off), "on_s": statistics.median(on),
                "overhead": statistics.median(ratios),
                "overhead_quartiles": [ratios[len(ratios) // 4], ratios[3 * len(ratios) // 4]],
            })  # fmt: skip
            row = rows[-1]
            print(f"{name:<7} {str(hidden):<11} bs {bs:>4}  off {row['off_s'] * 1e3:7.1f} ms  "
                  f"on {row['on_s'] * 1e3:7.1f} ms  overhead {row['overhead']:+.1%} "
                  f"(quartiles {ratios[len(ratios) // 4]:+.1%} .. {ratios[3 * len(ratios) // 4]:+.1%})",
                  flush=True)  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.noise_scale")
    parser.add_argument("--rounds", type=int, default=15, help="paired timings per workload")
    args = parser.parse_args(argv)
    import os

    rows = measure(args.rounds)
    out = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": git_commit(),
        "loadavg_1min": os.getloadavg()[0],
        "machine": machine_info(),
        "rounds": args.rounds,
        "workloads": rows,
    }
    path = RESULTS / "noise_scale.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
