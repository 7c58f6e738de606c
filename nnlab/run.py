"""``python -m nnlab.run [-m] key=value ...``: one training run, or a Hydra sweep of them.

The work is in ``nnlab.train`` (training) and ``nnlab.tracking`` (MLflow, the sweep callback).
A bad config value prints one line and exits 2 (``HYDRA_FULL_ERROR=1`` shows the traceback).
"""

from __future__ import annotations

import os
import signal
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nnlab.config import ConfigError

# conf/hydra/launcher/joblib.yaml sets our defaults (n_jobs=2) on top of the plugin's schema of the
# same name: intended, so Hydra's deprecation notice about it is noise (nnlab.tracking does the
# same for loky workers).
warnings.filterwarnings("ignore", message=r"(?s).*is validated against ConfigStore schema")


# conf/ sits at the repo root (works from a checkout and after `pip install -e .`); absolute, so
# it does not depend on how this module was started (`-m nnlab.run` or imported)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> dict:
    from nnlab.tracking import run_trial  # after Hydra parsed the command line: fast --help

    try:
        return run_trial(cfg)
    except ConfigError as exc:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"nnlab: invalid config: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def cli() -> None:
    """Entry point: SIGTERM behaves like Ctrl-C, so runs end as KILLED, not left RUNNING."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        main()
    except KeyboardInterrupt:
        from nnlab.tracking import abort_sweep

        abort_sweep()
        raise SystemExit(130) from None


if __name__ == "__main__":
    cli()
