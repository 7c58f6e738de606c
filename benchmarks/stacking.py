"""Stacked training: 64 flagship-size models trained one at a time, stacked, and by JAX.

The flagship sweep's trial (``conf/experiment/lr_vs_epochs.yaml``: 2-16-16-1 relu/sigmoid, binary
cross-entropy, Adam, its smallest batch, 16, on its moons data) x 64 members, seeds 0..63, the
sweep's learning rates in turn. Contenders, each in its own process pinned to the same core,
built and warmed up once (one epoch: buffers, JIT), then timed in interleaved turns (the order
rotates every round):

- ``alone``: nnlab, ``model.fit(epochs=E)`` for each of the 64 models in turn;
- ``stacked``: nnlab, ``nn.Stack(models).fit(epochs=E)``;
- ``jax``: JAX ``jit(vmap(step))``: one compiled step for all 64 models (forward, loss, grads,
  Adam), called once per batch from Python with each model's batch;
- ``jax_scan``: the same step vmapped and scanned over a whole epoch inside one compiled call.

All shuffle every model's data every epoch with the model's own permutation, compute every
model's epoch loss and start from the same initial weights (the nnlab models'). Reported: time
per model-step (a repeat's time / (64 x E x steps per epoch)), medians over rounds, and the
paired ratios (median over rounds of one contender's time / stacked's in the same round).

The crossover: ``alone`` and ``stacked`` in one pinned process, taking turns, on 2-w-w-1 nets by
hidden width w, by batch size, by stack size and by input width; the ratio is alone's time per
model-step / stacked's (> 1: stacking pays). ``nnlab.nn.stacked.stacking_pays`` is checked
against every cell.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from benchmarks.common import (
    REPO,
    Skipped,
    WorkerError,
    WorkerServer,
    module_available,
    run_worker,
    summarize,
)

K = 64
CONTENDERS = ("alone", "stacked", "jax", "jax_scan")
JAX_ROWS = ("jax", "jax_scan")
LABELS = {
    "alone": "nnlab, one model at a time",
    "stacked": "nnlab, nn.Stack (64 in lockstep)",
    "jax": "JAX jit(vmap(step)), 64 in lockstep",
    "jax_scan": "JAX jit(scan(vmap(step))) per epoch",
}
WIDTHS = (4, 8, 16, 32, 64, 128)
BATCHES = (8, 16, 32, 64, 128, 256)
STACK_SIZES = (2, 4, 16, 64)
FEATURES = (2, 16, 64)


def flagship() -> dict:
    """The flagship trial's shape, batch, learning rates and data spec (read from its config)."""
    from omegaconf import OmegaConf

    from benchmarks.workloads import w3_from_config

    w = w3_from_config()
    exp = REPO / "conf" / "experiment" / "lr_vs_epochs.yaml"
    axes = OmegaConf.load(exp).hydra.sweeper.params if exp.exists() else {}
    lrs = [float(v) for v in str(axes.get("lr", w.learning_rate)).split(",")]
    return {"workload": w.to_dict(), "lrs": lrs}


def _data(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """x (N, F) float32 and 0/1 targets (N, 1): the flagship's data, or Gaussian x with
    ``features`` columns (N = the flagship's) when a crossover cell asks for another width."""
    from benchmarks.workloads import Workload, make_data, targets

    w = Workload.from_dict(spec["workload"])
    x, y = make_data(w)
    features = spec.get("features", x.shape[1])
    if features != x.shape[1]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((len(x), features)).astype(np.float32)
        y = (x[:, 0] * x[:, 1 % features] > 0).astype(np.int64)
    return x, targets(w, y)


def _models(spec: dict, count: int, n_features: int) -> list:
    """``count`` compiled nnlab models 2-w-...-1 (seeds 0.., the sweep's rates in turn)."""
    from nnlab import nn

    hidden, lrs = spec["hidden"], spec["lrs"]
    models = []
    for i in range(count):
        layers = [nn.Dense(hidden[0], activation="relu", input_dim=n_features)]
        layers += [nn.Dense(h, activation="relu") for h in hidden[1:]]
        layers.append(nn.Dense(1, activation="sigmoid"))
        model = nn.Sequential(layers, seed=i, dtype="float32")
        model.compile(
            optimizer=nn.Adam(learning_rate=lrs[i % len(lrs)]), loss="binary_crossentropy"
        )
        models.append(model)
    return models


# ------------------------------------------------------------------ contenders (in the worker)


def _nnlab_fit(spec: dict, x: np.ndarray, y: np.ndarray, count: int, stacked: bool):
    """``fit(epochs) -> per-model epoch losses`` for ``count`` models alone or stacked."""
    from nnlab import nn

    models = _models(spec, count, x.shape[1])
    bs = spec["batch_size"]
    if stacked:
        stack = nn.Stack(models)

        def fit(epochs: int) -> list[float]:
            return [h.history["loss"][-1] for h in stack.fit(x, y, batch_size=bs, epochs=epochs)]

        return fit

    def fit_alone(epochs: int) -> list[float]:
        return [m.fit(x, y, batch_size=bs, epochs=epochs).history["loss"][-1] for m in models]

    return fit_alone


def _jax_fit(spec: dict, x: np.ndarray, y: np.ndarray, scan: bool):
    """The JAX contender: Adam and clipped binary cross-entropy as Keras, vmapped over the
    models, from the nnlab models' initial weights; each model shuffled by its own generator."""
    import jax
    import jax.numpy as jnp

    models = _models(spec, K, x.shape[1])
    params = [list(zip(ws[::2], ws[1::2], strict=True)) for ws in (m.get_weights() for m in models)]
    params = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *params)
    lrs = jnp.asarray([m.optimizer.learning_rate for m in models], jnp.float32)
    bs, n = spec["batch_size"], len(x)
    steps = n // bs  # whole batches only (the flagship's 640 samples / 16)

    def loss_fn(ps, xb, yb):
        h = xb
        for j, (w, b) in enumerate(ps):
            h = h @ w + b
            if j < len(ps) - 1:
                h = jax.nn.relu(h)
        p = jnp.clip(jax.nn.sigmoid(h), 1e-7, 1 - 1e-7)
        return -jnp.mean(yb * jnp.log(p) + (1 - yb) * jnp.log(1 - p))

    def step(state, xb, yb, lr):
        ps, m, v, t, total = state
        loss, g = jax.value_and_grad(loss_fn)(ps, xb, yb)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: m + (g - m) * 0.1, m, g)
        v = jax.tree_util.tree_map(lambda v, g: v + (g * g - v) * 0.001, v, g)
        alpha = lr * jnp.sqrt(1 - 0.999**t) / (1 - 0.9**t)
        ps = jax.tree_util.tree_map(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + 1e-7), ps, m, v)
        return ps, m, v, t, total + loss

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = [params, zeros, zeros, jnp.zeros(K, jnp.float32), jnp.zeros(K, jnp.float32)]
    rngs = [np.random.default_rng(i) for i in range(K)]
    vstep = jax.jit(jax.vmap(step))

    @jax.jit
    def scan_epoch(state, xs, ys):
        xb = jnp.swapaxes(xs[:, : steps * bs].reshape(K, steps, bs, -1), 0, 1)
        yb = jnp.swapaxes(ys[:, : steps * bs].reshape(K, steps, bs, -1), 0, 1)

        def body(st, batch):
            return jax.vmap(step)(st, batch[0], batch[1], lrs), None

        return jax.lax.scan(body, state, (xb, yb))[0]

    def fit(epochs: int) -> list[float]:
        st = (*state[:4], jnp.zeros(K, jnp.float32))
        for _ in range(epochs):
            order = np.stack([r.permutation(n) for r in rngs])
            xs, ys = x[order], y[order]
            st = (*st[:4], jnp.zeros(K, jnp.float32))
            if scan:
                st = scan_epoch(st, xs, ys)
            else:
                for s in range(steps):
                    st = vstep(st, xs[:, s * bs : (s + 1) * bs], ys[:, s * bs : (s + 1) * bs], lrs)
        jax.block_until_ready(st)
        state[:] = st
        return (np.asarray(st[4]) / steps).tolist()

    return fit


def _contender(spec: dict):
    """(fit, models per fit, steps per epoch) for ``spec["contender"]``."""
    x, y = _data(spec)
    name, bs = spec["contender"], spec["batch_size"]
    if name in JAX_ROWS:
        return _jax_fit(spec, x, y, scan=name == "jax_scan"), K, len(x) // bs
    count = spec.get("k", K)
    return _nnlab_fit(spec, x, y, count, stacked=name == "stacked"), count, math.ceil(len(x) / bs)


def serve(spec: dict) -> None:
    """Worker side: build the contender, one warm-up epoch, then one timed ``fit(epochs)`` per
    request line; replies ``{"us": time per model-step, "loss": median epoch loss}``."""
    fit, count, steps = _contender(spec)
    t0 = time.perf_counter()
    first = fit(1)
    ready = {"ready": True, "warmup_s": time.perf_counter() - t0, "first_loss": _median(first)}
    _reply(ready)
    for line in sys.stdin:
        if line.strip():
            epochs = int(json.loads(line)["epochs"])
            t0 = time.perf_counter()
            losses = fit(epochs)
            us = (time.perf_counter() - t0) / (count * epochs * steps) * 1e6
            _reply({"us": us, "loss": _median(losses)})


def _median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _timed(fit, count: int, steps: int, target_s: float) -> Callable[[], float]:
    """A function timing ``fit`` over the epochs that take about ``target_s`` (one warm-up
    epoch measures that); it returns microseconds per model-step."""
    t0 = time.perf_counter()
    fit(1)
    per_epoch = max(time.perf_counter() - t0, 1e-6)
    epochs = max(1, round(target_s / per_epoch))

    def timed() -> float:
        t0 = time.perf_counter()
        fit(epochs)
        return (time.perf_counter() - t0) / (count * epochs * steps) * 1e6

    return timed


def crossover(spec: dict) -> dict:
    """Worker side: per group (a width, batch size and input width), ``alone`` (4 models) and
    a stack of each size k take turns ``rounds`` times; a cell's ratio is the median over
    rounds of alone's time per model-step / that stack's."""
    cells = []
    for group in spec["groups"]:
        cs = {**spec["base"], **group, "hidden": [group["width"]] * 2}
        x, y = _data(cs)
        steps = math.ceil(len(x) / cs["batch_size"])
        alone = _timed(_nnlab_fit(cs, x, y, 4, False), 4, steps, spec["target_s"])
        stacks = {
            k: _timed(_nnlab_fit(cs, x, y, k, True), k, steps, spec["target_s"])
            for k in group["ks"]
        }
        times: dict = {"alone": [], **{k: [] for k in stacks}}
        for _ in range(spec["rounds"]):
            times["alone"].append(alone())
            for k, timed in stacks.items():
                times[k].append(timed())
        for k in stacks:
            pairs = list(zip(times["alone"], times[k], strict=True))
            cells.append(
                {
                    "width": group["width"],
                    "batch_size": group["batch_size"],
                    "features": group["features"],
                    "k": k,
                    "alone_us": statistics.median(times["alone"]),
                    "stacked_us": statistics.median(times[k]),
                    "ratio": statistics.median(a / t for a, t in pairs),
                }
            )
    return {"cells": cells}


# ------------------------------------------------------------------ the section (in benchmarks.run)


def _headline(base: dict, rounds: int, core: int) -> dict:
    epochs = {"alone": 1, "stacked": 10, "jax": 10, "jax_scan": 10}
    names = [c for c in CONTENDERS if c not in JAX_ROWS or module_available("jax")]
    servers, out = {}, {"contenders": {}}
    try:
        for name in names:
            servers[name] = WorkerServer({**base, "contender": name}, core=core, kind="stacking")
        ready = {}
        for name in list(servers):
            try:
                ready[name] = servers[name].ready()
            except WorkerError as exc:
                out["contenders"][name] = {"error": str(exc)}
                servers.pop(name).close()
        times: dict[str, list[float]] = {name: [] for name in servers}
        losses: dict[str, float] = {}
        for r in range(rounds):
            names = list(servers)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                reply = servers[name].request({"epochs": epochs[name]})
                times[name].append(reply["us"])
                losses[name] = reply["loss"]
    finally:
        for srv in servers.values():
            srv.close()
    for name, ts in times.items():
        out["contenders"][name] = {
            "us_per_model_step": summarize(ts),
            "epochs_per_repeat": epochs[name],
            "first_epoch_loss": ready[name]["first_loss"],
            "last_loss": losses[name],
        }
    if "stacked" in times:
        for name, ts in times.items():
            if name != "stacked":
                out[f"ratio_{name}"] = statistics.median(
                    t / s for t, s in zip(ts, times["stacked"], strict=True)
                )
    return out


def _groups(quick: bool) -> list[dict]:
    """Crossover groups: every width x batch size with stacks of STACK_SIZES, then input widths."""
    widths = (4, 16, 64, 128) if quick else WIDTHS
    batches = (8, 16, 64, 256) if quick else BATCHES
    ks = (4, 64) if quick else STACK_SIZES
    groups = [
        {"width": w, "batch_size": b, "features": 2, "ks": ks} for w in widths for b in batches
    ]
    groups += [
        {"width": w, "batch_size": b, "features": f, "ks": ks}
        for f in FEATURES
        if f != 2
        for w, b in ((16, 16), (64, 64))
    ]
    return groups


def run(quick: bool = False, core: int = 0) -> dict:
    if not module_available("nnlab.nn.stacked"):
        raise Skipped("nnlab.nn.stacked not available yet")
    from nnlab.nn.stacked import stacking_pays

    fl = flagship()
    w = fl["workload"]
    base = {
        "workload": w,
        "hidden": list(w["layers"][1:-1]),
        "batch_size": w["batch_size"],
        "lrs": fl["lrs"],
    }
    rounds = 3 if quick else 15
    out: dict = {"workload": w, "k": K, "lrs": fl["lrs"], "rounds": rounds}
    if not module_available("jax"):
        out["jax_skipped"] = 'JAX is not installed (pip install "jax[cpu]", or the bench extra)'
        print(f"  JAX rows skipped: {out['jax_skipped']}", flush=True)
    out.update(_headline(base, rounds, core))
    for name, r in out["contenders"].items():
        if "us_per_model_step" in r:
            print(
                f"  {LABELS[name]:<40} {r['us_per_model_step']['median']:7.2f} us/model-step",
                flush=True,
            )
    t0 = time.perf_counter()
    cross = run_worker(
        {
            "kind": "stacking_crossover",
            "base": base,
            "groups": _groups(quick),
            "rounds": 3 if quick else 9,
            "target_s": 0.03,
        },
        core=core,
        timeout=3600,
    )
    out["crossover_s"] = time.perf_counter() - t0
    for cell in cross["cells"]:
        widths = [cell["width"], cell["width"], 1]
        cell["stacking_pays"] = stacking_pays(
            widths, cell["batch_size"], cell["features"], cell["k"]
        )
    out["crossover"] = cross["cells"]
    out["auto_slower_cells"] = [
        c for c in cross["cells"] if c["stacking_pays"] and c["ratio"] < 1.0
    ]
    out["auto_min_ratio"] = min(
        (c["ratio"] for c in cross["cells"] if c["stacking_pays"]), default=None
    )
    out["summary"] = summary_lines(out)
    return out


def summary_lines(out: dict) -> list[str]:
    """The section's table: the headline, then the crossover tables and the rule's check."""
    return _headline_lines(out) + _crossover_lines(out)


def _headline_lines(out: dict) -> list[str]:
    w = out["workload"]
    lrs = ",".join(f"{v:g}" for v in out["lrs"])
    lines = [
        f"{out['k']} models {'-'.join(map(str, w['layers']))} relu/sigmoid, batch "
        f"{w['batch_size']}, Adam, {w['n_samples']} samples [{w['source']}], lrs {lrs} in turn; "
        f"median of {out['rounds']} interleaved rounds"
    ]
    if out.get("jax_skipped"):
        lines.append(f"JAX rows skipped: {out['jax_skipped']}")
    lines.append(
        f"  {'contender':<40} {'us/model-step':>13} {'min..max':>14} {'vs stacked':>10} "
        f"{'loss ep1':>8}"
    )
    for name, r in out["contenders"].items():
        if "us_per_model_step" not in r:
            lines.append(f"  {LABELS[name]:<40} {r.get('error', '')[:60]}")
            continue
        s = r["us_per_model_step"]
        ratio = out.get(f"ratio_{name}")
        vs = "-" if ratio is None else f"x{ratio:.2f}"
        spread = f"{s['min']:>6.2f}..{s['max']:<6.2f}"
        loss = r["first_epoch_loss"]
        lines.append(f"  {LABELS[name]:<40} {s['median']:>13.2f} {spread} {vs:>10} {loss:>8.4f}")
    lines.append(
        "  (vs stacked: median over rounds of that contender's time / stacked's, > 1: stacked "
        "is faster; loss ep1: the median model's first-epoch loss, same start, own shuffles)"
    )
    return lines


def _mark(cell: dict) -> str:
    return "*" if cell["stacking_pays"] else " "


def _crossover_lines(out: dict) -> list[str]:
    cells = out.get("crossover") or []
    if not cells:
        return []
    flat = [c for c in cells if c["features"] == 2]
    widths = sorted({c["width"] for c in flat})
    batches = sorted({c["batch_size"] for c in flat})
    lines = [
        "crossover: alone / stacked time per model-step, 2-w-w-1 nets on the flagship data "
        "(> 1: stacking pays; * = stacking_pays says stack)"
    ]
    for k in sorted({c["k"] for c in flat}):
        at = {(c["width"], c["batch_size"]): c for c in flat if c["k"] == k}
        head = f"  stacks of {k}: "
        lines.append(head + "width / batch".ljust(14) + "".join(f"{b:>8}" for b in batches))
        for wd in widths:
            row = [at.get((wd, b)) for b in batches]
            values = "".join(f"{c['ratio']:>7.2f}{_mark(c)}" if c else f"{'-':>8}" for c in row)
            lines.append(" " * len(head) + f"{wd:<14}" + values)
    for f, wd, b in sorted({(c["features"], c["width"], c["batch_size"]) for c in cells}):
        if f == 2:
            continue
        row = [c for c in cells if (c["features"], c["width"], c["batch_size"]) == (f, wd, b)]
        values = ", ".join(f"k={c['k']}: {c['ratio']:.2f}{_mark(c).strip()}" for c in row)
        lines.append(f"  {f} input features, width {wd}, batch {b}: {values}")
    stacked = sum(c["stacking_pays"] for c in cells)
    lowest = out["auto_min_ratio"]
    lines.append(
        f"  stacking_pays: stacks {stacked} of {len(cells)} cells, smallest measured ratio "
        f"there {'-' if lowest is None else f'{lowest:.2f}'}; cells it stacks that were "
        f"slower: {len(out['auto_slower_cells'])}"
    )
    return lines
