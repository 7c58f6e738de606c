"""Every string the report takes from the store reaches ``index.html`` as text, never as markup.

A real store: a tiny search and a tiny grid filed under one experiment through the CLI, then
made hostile through the MLflow client the way another tool (or a user) could: the experiment
renamed, run names, tags of the search's parent and trials, a trial's outcome tag and a param
set to HTML. The page must show each of them (escaped) and contain no markup of theirs.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from helpers import QUIET, TINY, cli, client, runs

from nnlab.report import build_report


def hostile(where: str) -> str:
    """A string that runs script if it reaches the page as markup, in an element or in a quoted
    attribute; ``where`` tells the sources apart on the page."""
    return f"<img src=x onerror=alert('{where}')>\"'><script>alert('{where}')</script>"


class Markup(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def page(make_launch_dir) -> dict:
    d = make_launch_dir("hostile")
    search = cli(
        d, "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=random",
        "hydra.sweeper.n_trials=3", "lr=tag(log, interval(1e-3, 0.3))", "epochs=2", *TINY, QUIET,
        "experiment_name=plain",
    )  # fmt: skip
    assert search.returncode == 0, search.stderr[-3000:]
    grid = cli(d, "-m", "lr=0.01,0.1", "epochs=2", "seed=0,1", *TINY, QUIET,
               "experiment_name=plain")  # fmt: skip
    assert grid.returncode == 0, grid.stderr[-3000:]

    c = client(d)
    c.rename_experiment(c.get_experiment_by_name("plain").experiment_id, hostile("experiment"))
    experiment = hostile("experiment")
    parents = {p.data.tags.get("optuna.study") is not None: p for p in runs(d, experiment, "sweep")}
    search_parent = parents[True]
    for key in ("optuna.study", "optuna.sampler", "optuna.pruner"):
        c.set_tag(search_parent.info.run_id, key, hostile(key))
    space = json.loads(search_parent.data.tags["optuna.space"])  # one more searched param
    c.set_tag(search_parent.info.run_id, "optuna.space",
              json.dumps({**space, "data.origin": hostile("space")}))  # fmt: skip
    trials = runs(d, experiment, "trial")
    search_trials = [t for t in trials if "optuna.trial" in t.data.tags]
    for t in search_trials:
        c.log_param(t.info.run_id, "data.origin", hostile("search param"))
    grid_trials = [t for t in trials if "optuna.trial" not in t.data.tags]
    c.set_tag(search_trials[0].info.run_id, "optuna.state", hostile("state"))  # CSV only
    c.set_tag(search_trials[1].info.run_id, "nnlab.outcome", hostile("trial outcome"))
    c.set_tag(grid_trials[0].info.run_id, "nnlab.outcome", hostile("outcome"))
    c.set_tag(grid_trials[0].info.run_id, "mlflow.runName", hostile("run name"))
    for i, t in enumerate(grid_trials):  # a param that differs between runs: listed as such
        c.log_param(t.info.run_id, "data.origin", hostile("param") if i == 0 else "plain")
    out = d / "report"
    index = build_report(experiment, out, tracking_uri=f"sqlite:///{d / 'mlflow.db'}",
                         progress=None)  # fmt: skip
    return {"html": index.read_text(encoding="utf-8"), "out": out}


SOURCES = ("experiment", "optuna.study", "optuna.sampler", "optuna.pruner", "space",
           "search param", "trial outcome", "outcome", "run name", "param")  # fmt: skip


def test_no_string_from_the_store_becomes_markup(page):
    html = page["html"]
    for where in (*SOURCES, "state"):
        assert hostile(where) not in html, where
    parser = Markup()
    parser.feed(html)
    names = {tag for tag, _ in parser.tags}
    assert "script" not in names
    for tag, attrs in parser.tags:
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)
        if tag == "img":  # only the report's own figures, drawn beside the page
            assert (page["out"] / attrs["src"]).is_file(), attrs
        if tag == "a":
            assert (page["out"] / attrs["href"]).is_file(), attrs


@pytest.mark.parametrize("where", SOURCES)
def test_each_hostile_string_is_shown_as_text(page, where):
    """Escaped, not dropped: the reader still sees what the store holds."""
    shown = hostile(where).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    shown = shown.replace('"', "&quot;").replace("'", "&#x27;")
    assert shown in page["html"], where
