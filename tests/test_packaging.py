"""nnlab as an installed package: where its configs are found, the package data, ``--help`` and
``--version``, the user's own configs (the docs' example, run), MLflow's source tags; and (slow)
a wheel built from this checkout, installed outside it and run from another directory.

The honest end-to-end check (a fresh virtualenv with every dependency, as a user gets it) is in
``.ci/run``; the slow test here installs only the wheel (``pip --target``) and borrows this
environment's dependencies, so it fits in a test run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from helpers import cli, env, runs

import nnlab
from nnlab import provenance
from nnlab.run import CONF_DIR, conf_dir

ROOT = Path(__file__).resolve().parents[1]


# --- where the configs are ----------------------------------------------------------------------


def test_conf_dir_is_the_wheels_copy_else_the_checkouts(tmp_path: Path) -> None:
    wheel = tmp_path / "site" / "nnlab"  # an installed wheel: nnlab/conf beside the code
    (wheel / "conf").mkdir(parents=True)
    (wheel / "conf" / "config.yaml").write_text("lr: 0.01\n")
    (tmp_path / "site" / "conf").mkdir()  # a stray top-level conf/ in site-packages: not ours
    (tmp_path / "site" / "conf" / "config.yaml").write_text("x: 1\n")
    assert conf_dir(wheel) == wheel / "conf"

    checkout = tmp_path / "repo" / "nnlab"  # a checkout or an editable install
    checkout.mkdir(parents=True)
    (tmp_path / "repo" / "conf").mkdir()
    (tmp_path / "repo" / "conf" / "config.yaml").write_text("lr: 0.01\n")
    assert conf_dir(checkout) == tmp_path / "repo" / "conf"

    lost = tmp_path / "lost" / "nnlab"
    lost.mkdir(parents=True)
    assert conf_dir(lost) == lost / "conf"  # cli() then says it is missing
    assert Path(CONF_DIR) == ROOT / "conf"  # this checkout: edits to conf/ apply at once


def test_package_data_globs_cover_every_shipped_file() -> None:
    """The wheel ships conf/ and nnlab/datasets/ by glob (setuptools' package-data): a file no
    glob matches (say a new ``digits.npz``) would be missing from every installed nnlab."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = globs["package-data"]
    for base, package, under in (
        (ROOT / "conf", "nnlab.conf", "."),
        (ROOT / "nnlab", "nnlab", "datasets"),
    ):
        files = {
            p for p in (base / under).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        }
        shipped = {p for g in globs[package] for p in base.glob(g)}
        assert files and files <= shipped, f"not in the wheel: {sorted(files - shipped)}"
    assert not (ROOT / "hydra_plugins" / "__init__.py").exists(), "hydra_plugins is a namespace"


def test_hydra_discovers_nnlabs_sweeper_in_this_install() -> None:
    """An editable install maps hydra_plugins through a path hook that Hydra's plugin scan
    does not follow unless the build declares hydra_plugins as a namespace package."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    assert "NnlabSweeper" in [p.__name__ for p in Plugins.instance().discover(Sweeper)]


# --- --help and --version -----------------------------------------------------------------------


def test_help_is_nnlabs_then_hydras(tmp_path: Path) -> None:
    proc = cli(tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"nnlab {nnlab.__version__}: ")
    ours, hydras = out.split("== Configuration groups ==")
    for axis in ("lr=", "batch_size=", "epochs=", "seed="):
        assert axis in ours
    for group in ("experiment", "data", "optimizer", "schedule", "tracking", "hydra/launcher"):
        for option in sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml")):
            assert option in ours, f"{group}={option} missing from nnlab's help"
    assert "-m +experiment=NAME" in ours and "--config-dir DIR" in ours
    assert "sqlite:///mlflow.db" in ours and "multirun/" in ours and "reports/" in ours
    assert f"nnlab's configs: {ROOT / 'conf'}" in ours
    assert "experiment: batch_size_effect" in hydras  # Hydra's own part follows


def test_version(tmp_path: Path) -> None:
    proc = cli(tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"nnlab {nnlab.__version__} (hydra-core ")
    assert version("nnlab") == nnlab.__version__  # the build reads nnlab.__version__


def test_missing_config_directory_is_one_line(tmp_path: Path) -> None:
    """A broken install (configs gone) says so and how to fix it, exit 2."""
    site = tmp_path / "site"  # the package without its conf/
    shutil.copytree(ROOT / "nnlab", site / "nnlab", ignore=shutil.ignore_patterns("__pycache__"))
    proc = cli(tmp_path, "epochs=1", environ=env(PYTHONPATH=str(site)))
    assert proc.returncode == 2
    assert proc.stderr.startswith("nnlab: config directory not found: ")
    assert "pip install" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


# --- the user's own configs: docs/configs.md's example, run as written --------------------------


ROWS = [((i * 7919) % 1000) / 500 - 1 for i in range(400)]  # 200 fixed points, 2 columns


def docs_example(into: Path) -> list[str]:
    """Write the ``my_configs/...`` YAML blocks of docs/configs.md under ``into``."""
    text = (ROOT / "docs" / "configs.md").read_text()
    written = []
    for name, block in re.findall(r"`(my_configs/[^`]+)`:\n\n```yaml\n(.*?)```", text, flags=re.S):
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_text(block)
        written.append(name)
    rows = [
        f"{x1:.3f},{x2:.3f},{int(x1 * x2 > 0)}"
        for x1, x2 in zip(ROWS[::2], ROWS[1::2], strict=True)
    ]
    (into / "points.csv").write_text("x1,x2,label\n" + "\n".join(rows) + "\n")
    return written


def test_docs_example_of_own_configs_runs(tmp_path: Path) -> None:
    assert docs_example(tmp_path) == [
        "my_configs/data/points.yaml",
        "my_configs/experiment/mine.yaml",
    ]
    proc = cli(tmp_path, "-m", "--config-dir", "my_configs", "+experiment=mine", "tracking=none")
    assert proc.returncode == 0, proc.stderr
    configs = sorted((tmp_path / "multirun").glob("*/*/*/artifacts/config.yaml"))
    assert len(configs) == 2
    texts = [c.read_text() for c in configs]
    assert all("path: points.csv" in t and "epochs: 5" in t for t in texts)
    assert sorted(re.search(r"^lr: (.*)$", t, re.M)[1] for t in texts) == ["0.01", "0.1"]

    # the same configs through hydra.searchpath (composed only)
    proc = cli(tmp_path, "hydra.searchpath=[file://my_configs]", "+experiment=mine", "--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    assert "experiment_name: mine" in proc.stdout and "target: label" in proc.stdout


# --- MLflow's source tags ------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(
        ["git", *ident, *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "code.py").write_text("x = 1\n")
    (repo / ".gitignore").write_text(".venv/\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def test_git_tags_in_a_checkout_clean_then_dirty(checkout: Path) -> None:
    code = str(checkout / "pkg")
    head = git(checkout, "rev-parse", "HEAD")
    assert provenance.git_tags(code) == {
        "mlflow.source.git.commit": head,
        "nnlab.git_dirty": "false",
    }
    (checkout / "pkg" / "code.py").write_text("x = 2\n")
    provenance._git_tags.cache_clear()
    assert provenance.git_tags(code)["nnlab.git_dirty"] == "true"


def test_no_commit_tag_outside_a_checkout_or_in_an_ignored_venv(
    checkout: Path, tmp_path: Path
) -> None:
    """An installed nnlab has no commit, even in a virtualenv inside some repository."""
    site = checkout / ".venv" / "lib" / "site-packages" / "nnlab"
    site.mkdir(parents=True)
    (site / "run.py").write_text("")
    assert provenance.git_tags(str(site)) == {}
    (tmp_path / "plain").mkdir()
    assert provenance.git_tags(str(tmp_path / "plain")) == {}
    tags = provenance.source_tags()
    assert {"mlflow.source.name", "mlflow.source.type", "mlflow.user"} <= set(tags)


def test_source_tags_use_mlflows_own_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.entities import SourceType
    from mlflow.utils import mlflow_tags

    assert provenance.GIT_COMMIT == mlflow_tags.MLFLOW_GIT_COMMIT
    assert provenance.SOURCE_NAME == mlflow_tags.MLFLOW_SOURCE_NAME
    assert provenance.SOURCE_TYPE == mlflow_tags.MLFLOW_SOURCE_TYPE
    assert provenance.USER == mlflow_tags.MLFLOW_USER
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    tags = provenance.source_tags("nnlab.recover")
    assert tags["mlflow.source.type"] == SourceType.to_string(SourceType.LOCAL)
    assert tags["mlflow.source.name"] == "nnlab.recover"
    assert tags["mlflow.user"] == "alice"
    tags["extra"] = "x"  # a fresh dict every call
    assert "extra" not in provenance.source_tags()


def test_this_checkout_is_tagged_with_its_head() -> None:
    try:
        head = git(ROOT, "rev-parse", "HEAD")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert provenance.source_tags()["mlflow.source.git.commit"] == head


# --- slow: the wheel, installed outside the checkout --------------------------------------------


@pytest.mark.slow
def test_wheel_runs_outside_the_checkout(tmp_path: Path) -> None:
    """Build sdist + wheel (the wheel from the sdist, as ``python -m build`` does), install the
    wheel alone into a directory, and run a sweep, the report and recover from another one."""
    pytest.importorskip("build")
    dist, site, work = tmp_path / "dist", tmp_path / "site", tmp_path / "work"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = dist.glob("nnlab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    confs = {
        f"nnlab/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in ROOT.glob("conf/**/*.yaml")
    }
    assert confs and confs <= names
    assert {"nnlab/datasets/breast_cancer.csv", "hydra_plugins/nnlab_sweeper/sweeper.py"} <= names
    assert "hydra_plugins/__init__.py" not in names

    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True, timeout=600)
    work.mkdir()
    wheel_env = env(PYTHONPATH=str(site))  # ahead of this checkout's editable install
    where = cli(work, "--version", environ=wheel_env)
    assert where.stdout.startswith(f"nnlab {nnlab.__version__}")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import nnlab.run as r, hydra_plugins.nnlab_sweeper as s; "
            "print(r.CONF_DIR); print(s.__file__)",
        ],
        cwd=work,
        env=wheel_env,
        capture_output=True,
        text=True,
        check=True,
    )
    paths = probe.stdout.split()  # the wheel's configs and plugin, not this checkout's
    assert len(paths) == 2 and all(path.startswith(str(site)) for path in paths), paths

    sweep = cli(
        work,
        "-m",
        "lr=0.1,0.01",
        "epochs=2",
        "data.n_samples=200",
        "experiment_name=smoke",
        environ=wheel_env,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert sorted(r.info.status for r in runs(work, "smoke", "trial")) == ["FINISHED"] * 2
    report = cli(work, "--experiment", "smoke", module="nnlab.report", environ=wheel_env)
    assert report.returncode == 0, report.stderr
    assert (work / "reports" / "smoke" / "index.html").stat().st_size > 0
    recover = cli(
        work, *map(str, work.glob("multirun/*/*")), module="nnlab.recover", environ=wheel_env
    )
    assert recover.returncode == 0 and recover.stdout.count("already complete") == 2, recover
    bundled = cli(work, "data=breast_cancer", "epochs=1", "tracking=none", environ=wheel_env)
    assert bundled.returncode == 0, bundled.stderr
