"""``python -m nnlab.lr_find [key=value ...]``: the LR range test, tracked as one MLflow run.

The same Hydra configs and overrides as ``python -m nnlab.run`` (``data=``, ``model.hidden=``,
``optimizer=``, ``batch_size=``, ``seed=``, ``tracking=``, ``+experiment=``...), plus the
``lr_find.*`` keys of ``conf/lr_find.yaml`` (fastai's defaults: a ramp from 1e-7 to 10 over 100
steps, smoothing 0.98, stop at 4x the best smoothed loss). ``lr``, ``epochs`` and ``schedule``
do not apply: the finder's ramp is the rate.

The model is the one ``nnlab.run`` would train (same architecture, initial weights, optimizer
and its settings); each step is one optimizer update on a fresh mini-batch of ``batch_size``
training samples (the samples in a new random order every pass, a pass's leftover that does not
fill a batch skipped, as fastai's training loader does), drawn with ``seed``. The numbers are
:mod:`nnlab.lr_range`'s.

The run's job directory (``outputs/<date>/<time>-<id>/``, the format of ``nnlab.jobdir``)::

    run.json                  params (the config and suggested_lr_valley / _minimum / _steep),
                              tags (nnlab.role=lr_find, ...), outcome
    artifacts/history.csv     step, learning_rate, batch_loss, smooth_loss: one row per step
    artifacts/lr_find.png     the curve with the suggestions marked
    artifacts/config.yaml, overrides.yaml

With ``tracking=sqlite`` or ``server`` it is then filed into MLflow as one run (metrics
``learning_rate``, ``batch_loss``, ``smooth_loss`` with step = the 1-based optimizer step);
``tracking=none`` never imports MLflow. Errors are one line; a bad config exits 2 before
anything trains.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from nnlab import lr_range
from nnlab.config import ConfigError, full_error, validate_lr_find
from nnlab.run import CONF_DIR, one_line

ROLE = "lr_find"  # the runs' nnlab.role tag
CURVE_COLUMNS = ("step", "learning_rate", "batch_loss", "smooth_loss")
FIGURE = "lr_find.png"
PARAM_PREFIX = "suggested_lr_"  # + rule name: the MLflow params of the suggestions


@dataclass
class FinderResult:
    """One range test: the recorded curve, the suggestions, the time it took.

    Attributes
    ----------
    test : nnlab.lr_range.RangeTest
        ``lrs``, ``losses``, ``smoothed`` (one entry per step run), ``stopped``.
    suggestions : dict[str, nnlab.lr_range.Suggestion]
        Rule name -> suggestion, in :data:`nnlab.lr_range.SUGGESTIONS` order.
    seconds : float
        Wall time of the steps.
    """

    test: lr_range.RangeTest
    suggestions: dict[str, lr_range.Suggestion]
    seconds: float

    def params(self) -> dict[str, float]:
        """``suggested_lr_<rule>`` -> rate (NaN when the curve was too short for the rule)."""
        return {f"{PARAM_PREFIX}{name}": s.lr for name, s in self.suggestions.items()}

    def kept(self) -> tuple[int, int]:
        """``[start, stop)`` of the steps the suggestions read (before a NaN cut)."""
        n = len(self.test.losses)
        return min(self.test.num_it // 10, n), max(n - lr_range.SKIP_END, 0)

    def curve_csv(self) -> str:
        """``history.csv``: one row per step (``CURVE_COLUMNS``), floats in full precision."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CURVE_COLUMNS)
        t = self.test
        for i, row in enumerate(zip(t.lrs, t.losses, t.smoothed, strict=True)):
            writer.writerow([i + 1, *(repr(float(v)) for v in row)])
        return buf.getvalue()


def mini_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless sample indices, ``min(batch_size, n)`` at a time: a fresh permutation of the
    ``n`` samples per pass, the pass's leftover that does not fill a batch skipped."""
    size = min(batch_size, n)
    while True:
        order = rng.permutation(n)
        for start in range(0, n - size + 1, size):
            yield order[start : start + size]


def run_range_test(plain: dict, data: Any = None) -> FinderResult:
    """Run the LR range test of a validated config (:func:`nnlab.config.validate_lr_find`).

    Parameters
    ----------
    plain : dict
        The config, with its ``lr_find`` keys.
    data : nnlab.data.Dataset, optional
        Already loaded from ``plain["data"]``.

    Returns
    -------
    FinderResult
    """
    from nnlab.build import build_model, load_data
    from nnlab.nn.schedules import ExponentialDecay

    lf = plain["lr_find"]
    test = lr_range.RangeTest(
        lf["start_lr"], lf["end_lr"], lf["num_it"], lf["beta"], lf["stop_factor"]
    )
    data = data if data is not None else load_data(plain["data"], plain["model"]["loss"])
    # the ramp as the optimizer's schedule: update k (0-based) runs at test.lr(k)
    ramp = ExponentialDecay(lf["start_lr"], lf["num_it"], lf["end_lr"] / lf["start_lr"])
    model = build_model(
        plain["model"], plain["optimizer"], data.n_features, data.n_classes, learning_rate=ramp
    )
    rng = np.random.default_rng([plain["model"]["seed"], 1])  # the batch order; weights: seed
    batches = mini_batches(len(data.x_train), plain["trainer"]["batch_size"], rng)
    t0 = time.perf_counter()
    for idx in batches:
        xb, yb = data.x_train[idx], data.y_train[idx]
        # one epoch of one batch: one update; its loss is measured before the update
        loss = model.fit(xb, yb, batch_size=len(idx), epochs=1, shuffle=False).history["loss"][0]
        if test.record(loss):
            break
    seconds = time.perf_counter() - t0
    suggestions = lr_range.suggest(
        np.array(test.lrs), np.array(test.smoothed), test.num_it, lr_range.SKIP_END
    )
    return FinderResult(test, suggestions, seconds)


def run_name(plain: dict) -> str:
    """``lr_find moons adam batch_size=64 seed=0``: what the run tested."""
    return (
        f"lr_find {plain['data']['name']} {plain['optimizer']['name']} "
        f"batch_size={plain['trainer']['batch_size']} seed={plain['model']['seed']}"
    )


def draw(result: FinderResult, plain: dict) -> Any:
    """The figure of ``result`` (nnlab.figures.lr_find.range_test)."""
    from nnlab.figures.lr_find import range_test

    t = result.test
    return range_test(
        np.array(t.lrs),
        np.array(t.losses),
        np.array(t.smoothed),
        result.suggestions,
        result.kept(),
        title=run_name(plain).replace("lr_find ", "LR range test: "),
    )


def write_job_dir(out: Path, plain: dict, overrides: list[str], result: FinderResult) -> None:
    """``run.json`` and ``artifacts/`` of the finder's run in ``out`` (module docstring)."""
    import matplotlib.pyplot as plt
    from omegaconf import OmegaConf

    import nnlab
    from nnlab.checkpoint import atomic_write_text
    from nnlab.provenance import source_tags
    from nnlab.tracking.schema import (
        RUN_FILE,
        RUN_FORMAT,
        Artifact,
        Tag,
        config_hash,
        flatten,
        param_value,
    )

    artifacts = out / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    texts = {
        Artifact.CONFIG: OmegaConf.to_yaml(OmegaConf.create(plain)),
        Artifact.OVERRIDES: OmegaConf.to_yaml(OmegaConf.create(list(overrides))),
        Artifact.HISTORY: result.curve_csv(),
    }
    for name, text in texts.items():
        atomic_write_text(artifacts / name, text, False)
    fig = draw(result, plain)
    fig.savefig(artifacts / FIGURE, dpi=110)
    plt.close(fig)
    t = result.test
    tracked = plain["tracking"]["backend"] == "mlflow"
    meta = {
        "format": RUN_FORMAT,
        "tracking_uri": plain["tracking"].get("uri") if tracked else None,
        "experiment_name": plain["experiment_name"],
        "experiment_id": None,
        "run_id": None,
        "run_name": run_name(plain),
        "params": {k: param_value(v) for k, v in {**flatten(plain), **result.params()}.items()},
        "tags": {
            Tag.ROLE: ROLE,
            Tag.VERSION: nnlab.__version__,
            Tag.CONFIG_HASH: config_hash(plain),
            "nnlab.lr_find.steps": str(len(t.losses)),
            "nnlab.lr_find.stopped": str(t.stopped).lower(),
            **source_tags("nnlab.lr_find"),
        },
        "outcome": "completed",
        "tracked": None if tracked else False,
        "error": None,
    }
    atomic_write_text(out / RUN_FILE, json.dumps(meta, indent=1, default=str), False)


def summary(result: FinderResult) -> str:
    """The line printed at the end: the suggestions and where the test ended."""
    t = result.test
    how = (
        f"stopped at step {len(t.losses)} (smoothed loss > {t.stop_factor:g}x its best)"
        if t.stopped
        else f"ran all {len(t.losses)} steps"
    )
    rules = " ".join(
        f"{name}={s.lr:.3g}" if not math.isnan(s.lr) else f"{name}=none"
        for name, s in result.suggestions.items()
    )
    return f"lr_find: suggested lr {rules} ({how}, {result.seconds:.2f}s)"


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="lr_find")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        plain = validate_lr_find(cfg)
        from nnlab.build import check_model_fits, load_data

        data = load_data(plain["data"], plain["model"]["loss"])
        check_model_fits(plain["model"], data.n_features, data.n_classes, plain["optimizer"])
    except ConfigError as exc:
        if full_error():
            raise
        print(f"nnlab: invalid config: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    result = run_range_test(plain, data)
    write_job_dir(out, plain, list(hc.overrides.task), result)
    print(summary(result), flush=True)
    if plain["tracking"]["backend"] != "mlflow":
        print(f"  job directory: {out}", flush=True)
        return
    from nnlab.tracking import file_job_dir

    run_id = file_job_dir(out, plain, Path.cwd())
    print(f"  MLflow run {run_id} in experiment {plain['experiment_name']!r}", flush=True)


def cli() -> None:
    """Entry point: one run only (no ``-m``); one-line errors as ``nnlab.run``'s."""
    import os

    if any(a in ("-m", "--multirun") for a in sys.argv[1:]):
        print(
            "nnlab: invalid command line: python -m nnlab.lr_find runs one range test (no -m); "
            "run it once per set-up",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2)
    os.environ.setdefault("NNLAB_FULL_ERROR", os.environ.get("HYDRA_FULL_ERROR", "0"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:
        if full_error():
            raise
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(exc, (HydraException, OmegaConfBaseException)):
            print(f"nnlab: invalid command line: {one_line(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        print(f"nnlab: lr_find failed: {type(exc).__name__}: {one_line(exc)}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    cli()
