"""scripts/readme_figure.py: the README's flagship block is written from a real run's report.

A tiny flagship (3 lrs, 1 batch size, 2 budgets, 2 seeds on 200 samples) runs through the
script's own entry point into a temporary directory; the README it rewrites is a copy.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow

TINY_FLAGSHIP = ["lr=0.01,0.1,1", "batch_size=64", "epochs=3,6", "seed=0,1", "data.n_samples=200"]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location(
        "readme_figure", ROOT / "scripts/readme_figure.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_block_comes_from_the_runs_report(script, tmp_path: Path, monkeypatch) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{script.BEGIN}\nold numbers 0.448\n{script.END}\noutro\n")
    monkeypatch.setattr(script, "README", readme)
    figures = {name: str(tmp_path / f"copy_{name}") for name in script.FIGURES}
    monkeypatch.setattr(script, "FIGURES", figures)
    script.main(["--workdir", str(tmp_path / "run"), *TINY_FLAGSHIP])

    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "0.448" not in text
    block = text.split(script.BEGIN)[1].split(script.END)[0]
    assert "12 trials: 3 learning rates × 1 batch sizes × 2 epoch budgets × 2 seeds" in block
    rows = re.findall(r"^\| (\S+) \| (.+?) \| (\d+)/(\d+) \| (.+?) \|$", block, re.M)
    assert [r[0] for r in rows] == ["0.01", "0.1", "1"]
    assert rows[2][1:] == ("not within 6", "0", "2", "n/a")  # lr 1 diverges in every run
    per_lr = pd.read_csv(tmp_path / "run" / "reports" / "lr_vs_epochs" / "per_lr.csv")
    for row, lr in zip(rows, per_lr.itertuples(), strict=True):  # the report's numbers
        assert (int(row[2]), int(row[3])) == (lr.reached_target, lr.runs)
        if math.isinf(lr.median_best):
            assert row[4] == "n/a"
        else:  # the median and its interval over seeds
            assert row[4] == f"{lr.median_best:.3f} [{lr.best_lo:.3f}, {lr.best_hi:.3f}]", row
    for copy in figures.values():
        assert Path(copy).read_bytes().startswith(b"\x89PNG")
