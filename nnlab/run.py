"""``python -m nnlab.run [-m] key=value ...``: one training run, or a Hydra sweep of them.

The work is in ``nnlab.train`` (training) and ``nnlab.tracking`` (MLflow, the sweep callback).
Errors are one line on stderr, never a traceback unless asked for (``HYDRA_FULL_ERROR=1``):
a bad config value, a bad override or an unusable store / checkpoint exits 2 before any MLflow
run exists; a failing single run exits 1 (its traceback is saved next to its history).
Ctrl-C and SIGTERM end the running trial as KILLED, keep its checkpoint and exit 130.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nnlab.config import ConfigError, full_error

# conf/ sits at the repo root (works from a checkout and after `pip install -e .`); absolute, so
# it does not depend on how this module was started (`-m nnlab.run` or imported)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> dict:
    from nnlab.tracking import run_trial  # after Hydra parsed the command line: fast --help

    try:
        return run_trial(cfg)
    except ConfigError as exc:
        if full_error():
            raise
        print(f"nnlab: invalid config: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except Exception as exc:  # a single run failed (a sweep records failures, never raises)
        if full_error():
            raise
        print(f"nnlab: run failed: {failure(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def failure(exc: BaseException) -> str:
    return (
        f"{type(exc).__name__}: {one_line(exc)} (the traceback is in the job's "
        "artifacts/traceback.txt; HYDRA_FULL_ERROR=1 prints it)"
    )


def one_line(exc: BaseException) -> str:
    """Hydra's multi-line messages on one line (indented option lists joined by commas)."""
    parts: list[str] = []
    for raw in str(exc).splitlines():
        line = raw.strip()
        if not line or line.startswith(("Config search path", "provider=")):
            continue
        if raw.startswith(("\t", " ")) and parts:
            parts[-1] += ("" if parts[-1].endswith(":") else ",") + f" {line}"
        else:
            parts.append(line)
    text = ""
    for part in parts:  # "Could not override 'foo'. To append ..." reads as one sentence pair
        text += (" " if text.endswith((".", ":")) else "; " if text else "") + part
    return text or type(exc).__name__


def cli() -> None:
    """Entry point: SIGTERM behaves like Ctrl-C, so runs end as KILLED, not left RUNNING
    (``nnlab.train.request_interrupt``: also re-raised at the next epoch if Python swallowed it).

    Hydra prints its own errors over several lines; with ``HYDRA_FULL_ERROR=1`` set here it
    raises them instead and this prints one line (the user's own ``HYDRA_FULL_ERROR=1`` is kept
    in ``NNLAB_FULL_ERROR`` and still gets the traceback).
    """
    from nnlab.train import request_interrupt

    signal.signal(signal.SIGINT, request_interrupt)
    signal.signal(signal.SIGTERM, request_interrupt)
    os.environ.setdefault("NNLAB_FULL_ERROR", os.environ.get("HYDRA_FULL_ERROR", "0"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except KeyboardInterrupt:
        from nnlab.tracking import abort_sweep

        abort_sweep()
        raise SystemExit(130) from None
    except Exception as exc:
        if full_error():
            raise
        from hydra.errors import HydraException
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(exc, (HydraException, OmegaConfBaseException)):
            print(f"nnlab: invalid command line: {one_line(exc)}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        print(f"nnlab: run failed: {failure(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    cli()
