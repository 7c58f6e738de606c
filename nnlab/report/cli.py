"""``python -m nnlab.report``: the command line of :func:`nnlab.report.build_report`.

::

    python -m nnlab.report --experiment lr_vs_epochs [--out DIR] [--metric val_loss]
                           [--tracking-uri URI] [--target 0.1]
"""

from __future__ import annotations

import argparse
import sys

from nnlab.config import report_dir
from nnlab.report.build import build_report

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, build the report; 0 on success, 2 (one line on stderr) on a bad request."""
    ap = argparse.ArgumentParser(
        prog="python -m nnlab.report",
        description="Figures and findings of a tracked nnlab sweep (HTML + PNG + CSV).",
    )
    ap.add_argument("--experiment", required=True, help="MLflow experiment name")
    ap.add_argument("--out", default=None, help="output directory (default reports/<experiment>)")
    ap.add_argument("--metric", default="val_loss", help="per-epoch metric, lower is better")
    ap.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)",
    )
    ap.add_argument(
        "--target",
        type=float,
        default=None,
        help="absolute target for 'epochs to target' (default 1.25 x best reached)",
    )
    args = ap.parse_args(argv)
    try:
        out = args.out or report_dir(args.experiment)  # a name like ../x must not leave reports/
        build_report(args.experiment, out, args.metric, args.tracking_uri, target=args.target)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
