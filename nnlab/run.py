"""``python -m nnlab.run [-m] key=value ...``: one training run, or a Hydra sweep of them.

The work is in ``nnlab.train`` (training), ``nnlab.sweep`` (a sweep's launch) and
``nnlab.tracking`` (the job directory, MLflow).
Errors are one line on stderr, never a traceback unless asked for (``HYDRA_FULL_ERROR=1``):
a bad config value, a bad override or an unusable store / checkpoint exits 2 before any MLflow
run exists; a failing single run exits 1 (its traceback is saved next to its history).
Ctrl-C and SIGTERM end the running trial as KILLED, keep its checkpoint and exit 130.
"""

from __future__ import annotations

import os
import signal
import sys
import uuid
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from nnlab.config import ConfigError, full_error


def _launch_id() -> str:
    """A short id unique to this launch, cached by OmegaConf like ``${now:}``: every job of the
    sweep resolves the same value (Hydra copies the launcher's resolver cache to each job), so
    two sweeps launched in the same second still get their own directories."""
    return uuid.uuid4().hex[:6]


OmegaConf.register_new_resolver("nnlab_launch_id", _launch_id, use_cache=True, replace=True)


def conf_dir(package: Path | None = None) -> Path:
    """nnlab's Hydra configs: ``nnlab/conf`` in an installed wheel (the build maps the top-level
    ``conf/`` there), else the checkout's ``conf/`` (a checkout or ``pip install -e .``: edits to
    ``conf/`` apply at once). Absolute, so it does not depend on the launch directory.

    ``package`` is the ``nnlab`` package directory (default: this file's)."""
    package = package or Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    return package / "conf"  # missing: cli() says so in one line


CONF_DIR = str(conf_dir())


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> dict:
    from nnlab.tracking import run_trial  # after Hydra parsed the command line: fast --help

    try:
        return run_trial(cfg)
    except ConfigError as exc:
        remove_empty_job_dir()
        if full_error():
            raise
        print(f"nnlab: invalid config: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except Exception as exc:  # a single run failed (a sweep records failures, never raises)
        if full_error():
            raise
        print(f"nnlab: run failed: {failure(exc)}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


def remove_empty_job_dir() -> None:
    """A refused single run leaves nothing behind: Hydra made its job directory before nnlab
    saw the config; it goes again (with the dated directories above it) while still empty."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    out = Path(HydraConfig.get().runtime.output_dir)
    for directory in (out, out.parent, out.parent.parent):
        try:
            directory.rmdir()  # only an empty directory: never anything a run wrote
        except OSError:
            return


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


def options(group: str) -> list[str]:
    """The options of a config group in nnlab's configs (file names without ``.yaml``)."""
    return sorted(path.stem for path in (Path(CONF_DIR) / group).glob("*.yaml"))


def experiment_line(name: str) -> str:
    """``name`` and the first comment of ``experiment/<name>.yaml`` (up to a ``:`` example)."""
    for line in (Path(CONF_DIR) / "experiment" / f"{name}.yaml").read_text("utf-8").splitlines():
        text = line.lstrip("# ").strip()
        if line.startswith("#") and text and not text.startswith("@package"):
            text = text.split(": python")[0].rstrip(".:")
            return f"{name}: {text if len(text) < 80 else text[:76].rsplit(' ', 1)[0] + ' ...'}"
    return name


def help_text() -> str:
    """nnlab's own ``--help``, printed above Hydra's: the axes, groups, experiments, output."""
    import nnlab

    top = OmegaConf.load(Path(CONF_DIR) / "config.yaml")
    entries = OmegaConf.to_container(top.defaults)  # unresolved: `hydra/sweeper: ${sweeper}`
    chosen = {k: v for d in entries if isinstance(d, dict) for k, v in d.items()}
    uri = OmegaConf.load(Path(CONF_DIR) / "tracking" / f"{chosen.get('tracking')}.yaml").uri

    def group(name: str) -> str:
        if not options(name):
            return ""
        if name not in chosen:  # no default: added with +
            return f"+{name}={'|'.join(options(name))}"
        rest = [o for o in options(name) if o != chosen[name]]
        return f"{name}={chosen[name]}" + (f" ({', '.join(rest)})" if rest else "")

    experiments = "\n".join(f"    {experiment_line(e)}" for e in options("experiment"))
    return f"""nnlab {nnlab.__version__}: train a small network on a 2-D or tabular problem, or sweep
learning rate x batch size x epochs; every trial is tracked in MLflow.

usage: python -m nnlab.run [-m] [key=value ...]     -m: one trial per combination of values

sweep axes (defaults): lr={top.lr} batch_size={top.batch_size} epochs={top.epochs} seed={top.seed}
    python -m nnlab.run -m lr=0.1,0.01 batch_size=16,64 epochs=10,50
main groups (group=default (other options)):
    {group("data")}
    {group("optimizer")}   {group("schedule")}
    {group("tracking")}   hydra/launcher=basic ({", ".join([*options("hydra/launcher"), "joblib"])})
experiments (-m +experiment=NAME):
{experiments}
your own configs (nnlab's stay as they are): --config-dir DIR
    DIR/experiment/mine.yaml -> +experiment=mine    DIR/data/mine.yaml -> data=mine
where runs go (relative to the launch directory):
    MLflow store {uri}: mlflow ui --backend-store-uri {uri}
    job directories multirun/<date>/<time>-<id>/<job> (sweeps), outputs/<date>/<time>-<id>
    report reports/<experiment_name>: python -m nnlab.report --experiment NAME
nnlab's configs: {CONF_DIR}
"""


def version_text() -> str:
    """``nnlab X.Y.Z`` and the versions that decide its numbers and its store format."""
    from importlib.metadata import PackageNotFoundError, version

    import nnlab

    def of(dist: str) -> str:
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            return f"{dist} missing"

    deps = ", ".join(of(d) for d in ("hydra-core", "mlflow", "numpy"))
    return f"nnlab {nnlab.__version__} ({deps}, Python {sys.version.split()[0]})"


def early_exit(args: list[str]) -> None:
    """``--version``; ``--help`` prints nnlab's help, then returns for Hydra's; a missing
    config directory ends here with the fix instead of Hydra's lines."""
    if "--version" in args:
        print(version_text(), flush=True)
        raise SystemExit(0)
    if not (Path(CONF_DIR) / "config.yaml").is_file():
        print(
            f"nnlab: config directory not found: {CONF_DIR} (nnlab/conf of an installed wheel "
            "or conf/ of a checkout); reinstall nnlab: pip install nnlab, or pip install -e . "
            "in a checkout",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(2)
    if "--help" in args or "-h" in args:
        print(help_text(), flush=True)
        print("Hydra's help, every group and the composed config:\n", flush=True)


def quiet_pipe() -> None:
    """The reader of the help left (``| head``): exit 0 without Python's flush error (the
    recipe of Python's ``signal`` docs: stdout onto /dev/null)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(0)


def cli() -> None:
    """Entry point: SIGTERM behaves like Ctrl-C, so runs end as KILLED, not left RUNNING
    (``nnlab.train.request_interrupt``: also re-raised at the next epoch if Python swallowed it).

    Hydra prints its own errors over several lines; with ``HYDRA_FULL_ERROR=1`` set here it
    raises them instead and this prints one line (the user's own ``HYDRA_FULL_ERROR=1`` is kept
    in ``NNLAB_FULL_ERROR`` and still gets the traceback).
    """
    from nnlab.train import request_interrupt

    helping = "--help" in sys.argv[1:] or "-h" in sys.argv[1:]
    try:
        early_exit(sys.argv[1:])
    except BrokenPipeError:  # `--help | head`
        quiet_pipe()
    signal.signal(signal.SIGINT, request_interrupt)
    signal.signal(signal.SIGTERM, request_interrupt)
    os.environ.setdefault("NNLAB_FULL_ERROR", os.environ.get("HYDRA_FULL_ERROR", "0"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except KeyboardInterrupt:  # a sweep has ended its trials and parent KILLED already
        raise SystemExit(130) from None
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and helping:
            quiet_pipe()
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
