"""End to end: `dvc repro` in a temporary copy of the repository with tiny params.

Which stages a change invalidates is read from `dvc status --json`, DVC's own account of changed
dependencies and params, not from its log text.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import (
    changed_stages,
    copy_repo,
    dvc_in,
    require_system,
    run_in,
    tiny_pipeline_params,
    write_params,
)

pytestmark = pytest.mark.pipeline

CHROMIUM = "/usr/bin/chromium"
# Headless, and none of the background traffic (updates, sync, field trials) a fresh profile starts.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps"]


@pytest.fixture
def scratch_repo(tiny_pipeline: Path, tmp_path: Path) -> Path:
    """A copy of the reproduced tiny pipeline for a test that edits it."""
    return copy_repo(tiny_pipeline, tmp_path / "repo")


# The model an experiment retrains: one no probe uses, so that only its own runs follow.
RETRAINED = "inception_v3"


@pytest.fixture(scope="module")
def retrained(tiny_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """(repo, dvc.lock stages before, after) of a copy where `dvc exp run` retrained RETRAINED at lr 0.002."""
    repo = copy_repo(tiny_pipeline, tmp_path_factory.mktemp("retrained") / "repo")
    before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    dvc_in(repo, "exp", "run", "-S", f"model.{RETRAINED}.lr=0.002")
    return repo, before, yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def assert_within_intervals(metrics: dict, where: str) -> None:
    """Every score with an interval lies inside it (a missing score, a NaN or a swapped interval fails)."""
    scored = [key[:-len("_ci_low")] for key in metrics if key.endswith("_ci_low")]
    assert scored, f"{where}: no interval"
    for key in scored:
        assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"], (where, key)


def assert_metrics_match_predictions(repo: Path, metrics_path: str, predictions_path: str) -> None:
    """A metrics file says what its per-image predictions say."""
    metrics = json.loads((repo / metrics_path).read_text())
    predictions = pd.read_csv(repo / predictions_path)
    assert metrics["n_test"] == len(predictions) > 0
    assert metrics["accuracy"] == pytest.approx((predictions["actual"] == predictions["predicted"]).mean())
    assert_within_intervals(metrics, metrics_path)


def test_repro_builds_every_run_and_the_report(tiny_pipeline):
    repo = tiny_pipeline
    params = tiny_pipeline_params()
    for dataset in params["datasets"]:
        for model in params["models"]:
            assert (repo / "metrics" / "classify" / dataset / f"{model}.json").is_file()
            assert (repo / "models" / dataset / f"{model}.pt").is_file()
    for test in params["cross_tests"]:
        for model in params["models"]:
            run = f"{test['trained_on']}-on-{test['tested_on']}/{model}"
            assert_metrics_match_predictions(repo, f"metrics/cross/{run}.json", f"reports/cross/{run}/predictions.csv")
    for dataset in params["datasets"]:
        for model in params["models"]:
            explained = json.loads((repo / "metrics" / "explain" / dataset / f"{model}.json").read_text())
            assert explained["grid"] >= params["explain"]["min_grid"] and explained["images"] > 0
            assert_within_intervals(explained, f"explain {dataset}/{model}")
            assert_metrics_match_predictions(repo, f"metrics/classify/{dataset}/{model}.json",
                                             f"reports/evaluate/{dataset}/{model}/predictions.csv")
            panels = {path.name for path in (repo / "reports" / "explain" / dataset / model).glob("panel_*.png")}
            assert panels and (repo / "reports" / "explain" / dataset / model / "maps.npz").is_file()
    for figure in ("comparison.png", "explanations.png", "zones.png"):
        assert (repo / "reports" / figure).read_bytes()[:4] == b"\x89PNG", figure
    table = (repo / "reports" / "summary.md").read_text()
    lines = table.splitlines()
    own = {f"| {d} | {m} |" for d in params["datasets"] for m in params["models"]}
    cross = {f"| {t['trained_on']} | {t['tested_on']} | {m} |" for t in params["cross_tests"] for m in params["models"]}
    # Three tables have a row per run: scores, explanations, COVID-19 lung zones.
    assert sum(line.startswith(tuple(own)) for line in lines) == 3 * len(own)
    assert sum(line.startswith(tuple(cross)) for line in lines) == len(cross)
    for dataset in params["segment"]["evaluate_on"]:
        segmented = json.loads((repo / "metrics" / "segment" / "evaluate" / f"{dataset}.json").read_text())
        assert segmented["images"] > 0
        assert_within_intervals(segmented, f"segment evaluate {dataset}")
        interpreted = json.loads((repo / "metrics" / "segment" / "explain" / f"{dataset}.json").read_text())
        assert interpreted["images"] > 0
        assert_within_intervals(interpreted, f"segment explain {dataset}")
        for figure in ("gallery.png", "zones.png"):
            assert (repo / "reports" / "segment" / dataset / figure).read_bytes()[:4] == b"\x89PNG"
        assert any(line.startswith(f"| {dataset} | ") and line.count("|") == 11 for line in lines)  # segmentation row
    view = json.loads((repo / "reports" / "data" / "views" / "lungs_segmented.json").read_text())
    assert view["masks"] == "segmenter" and view["counts"]["train"] == {c: 0 for c in params["classes"]}
    assert view["segmenter_mask_checks"]["masks"] == view["images_kept"]
    by_model = [line for line in lines if line.startswith(tuple(f"| {m} | " for m in params["models"]))]
    assert sum(line.count("|") == 7 for line in by_model) == len(params["models"])  # the cascade's rows
    shortcut, probe = params["shortcut"], params["probe"]
    shortcut_rows = [line for line in by_model if line.count("|") == 6 and "(outside)" not in line]
    assert len(shortcut_rows) == len(probe["models"]) == 1  # the shortcut experiment's
    for model in probe["models"]:
        for folder in (f"classify/{shortcut['dataset']}", f"cross/{shortcut['dataset']}-on-{shortcut['marker_free']}"):
            assert_within_intervals(json.loads((repo / "metrics" / folder / f"{model}.json").read_text()),
                                    f"probe {model} in {folder}")
        for dataset in probe["datasets"]:
            assert (repo / "metrics" / "explain" / dataset / f"{model}.json").is_file()
    # The shortcut audit: a row per source the trained datasets and probes read, and the outside probe beside the
    # same model's full and lungs runs.
    assert sum(line.startswith(("| synthetic |", "| synthetic_shortcut |")) and line.count("|") == 8
               for line in lines) == 2
    assert any(line.startswith("| resnet18 | synthetic | ") and "(outside)" in line for line in lines)
    for source in ("synthetic", "synthetic_shortcut", "synthetic_hospital2"):
        audit = json.loads((repo / "metrics" / "data" / f"{source}.json").read_text())
        assert audit["test_images"] > 0
        assert_within_intervals(audit, f"audit {source}")
    assert changed_stages(repo) == set()
    # DVC shows the headline, and every other metrics file when named, as the stage wrote it.
    shown = json.loads(dvc_in(repo, "metrics", "show", "--json"))[""]["data"]
    assert list(shown) == ["metrics/headline.json"]
    assert shown["metrics/headline.json"]["data"]["macro_f1"]["lungs/inception_v3"] == round(
        json.loads((repo / "metrics/classify/lungs/inception_v3.json").read_text())["macro_f1"], 4)
    shown = json.loads(dvc_in(repo, "metrics", "show", "--json", "metrics/classify", "metrics/cross",
                              "metrics/explain"))[""]["data"]
    for path in ("metrics/classify/lungs/inception_v3.json", "metrics/cross/lungs-on-hospital2_lungs/inception_v3.json",
                 "metrics/explain/full/resnet18.json"):
        written = {key: value for key, value in json.loads((repo / path).read_text()).items() if value is not None}
        assert shown[path]["data"] == written, path  # DVC leaves out the undefined (null) scores


def test_stages_write_exactly_their_declared_outputs(tiny_pipeline):
    """Every file the run made lies inside an output dvc.yaml declares, and every declared output exists."""
    repo = tiny_pipeline
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        outs = {Path(out.def_path) for stage in dvc_repo.index.stages for out in stage.outs}
    assert all((repo / out).exists() for out in outs)
    tracked_before_run = set(run_in(repo, "git", "ls-tree", "-r", "--name-only", "HEAD~1").split())
    made = {path.relative_to(repo) for path in repo.rglob("*") if path.is_file()
            and path.relative_to(repo).parts[0] not in (".git", ".dvc")
            and "__pycache__" not in path.parts and path.name not in ("dvc.lock", ".gitignore")}
    stray = {path for path in made - {Path(p) for p in tracked_before_run}
             if not any(path == out or out in path.parents for out in outs)}
    assert stray == set(), f"written outside the declared outputs: {sorted(map(str, stray))}"


def test_second_repro_runs_nothing(tiny_pipeline):
    assert changed_stages(tiny_pipeline) == set()
    lock = (tiny_pipeline / "dvc.lock").read_text()
    dvc_in(tiny_pipeline, "repro")
    assert (tiny_pipeline / "dvc.lock").read_text() == lock


def test_predict_runs_the_cascade_as_the_crosstest_scored_it(tiny_pipeline):
    """A lungs model on raw films: the segmenter cuts the lungs out exactly as prepare_segmented did for the
    cascade's cross test, so the probabilities are that test's, and the mask checks its view report's."""
    repo = tiny_pipeline
    scored = pd.read_csv(repo / "reports/cross/lungs-on-lungs_segmented/resnet18/predictions.csv")
    films = [f"data/raw/synthetic/{name}" for name in scored["name"]]
    result = json.loads(run_in(repo, "cxr", "predict", *films, "--model", "resnet18-lungs", "--json"))
    assert result["view"] == "lungs" and not result["failed"]
    columns = [c for c in scored.columns if c.startswith("p_")]
    for prediction, (_, row) in zip(result["predictions"], scored.iterrows(), strict=True):
        # A film whose mask fails the anatomical checks gets no class; the model's output on it is kept apart.
        lungs = prediction["lungs"]
        assert lungs["plausible"] == (not lungs["reasons"]) == (prediction["abstained"] is None)
        probabilities = prediction["probabilities"] or prediction["unreliable_probabilities"]
        assert prediction["predicted"] in (row["predicted"], None)
        assert max(probabilities, key=probabilities.get) == row["predicted"]
        np.testing.assert_allclose(list(probabilities.values()), row[columns].to_numpy(float), atol=2e-6)
    checks = json.loads((repo / "reports/data/views/lungs_segmented.json").read_text())["segmenter_mask_checks"]
    plausible = [p["lungs"]["plausible"] for p in result["predictions"]]
    assert np.mean(plausible) == pytest.approx(checks["plausible"])
    assert sum(p["lungs"]["regions"] == 0 for p in result["predictions"]) == checks["empty"]


@pytest.mark.system
def test_the_html_report_renders_offline_in_chromium(tiny_pipeline, tmp_path):
    """reports/index.html in Debian's headless Chromium: no console message, no request but the page itself,
    every figure decoded and captioned; the screenshot is kept beside the test's files."""
    from playwright.sync_api import sync_playwright

    page_file = tiny_pipeline / "reports" / "index.html"
    require_system(CHROMIUM, "Debian's chromium (`apt-get install -y chromium`)")
    messages, requests, errors = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri(), wait_until="load")
            figures = page.evaluate("""() => [...document.querySelectorAll('figure')].map(f => ({
                decoded: f.querySelector('img').complete && f.querySelector('img').naturalWidth > 0,
                caption: f.querySelector('figcaption').textContent.trim()}))""")
            sections = page.evaluate("() => [...document.querySelectorAll('section h2')].map(h => h.textContent)")
            tables = page.locator("table").count()
            page.screenshot(path=tmp_path / "report.png", full_page=True)
        finally:
            browser.close()
    assert messages == [] and errors == []
    assert requests == [page_file.as_uri()], "the page loads nothing but itself"
    assert figures and all(f["decoded"] and len(f["caption"]) > 20 for f in figures)
    params = tiny_pipeline_params()
    expected = {"Scores", "Cross-dataset", "Explanations", "Lung segmentation"} | {f"Dataset {d}" for d in params["datasets"]}
    assert expected <= set(sections)
    # The scores, the cross tests, the explanations and a confusion matrix per run and per cross test at least.
    runs = len(params["datasets"]) * len(params["models"])
    assert tables >= 3 + runs + len(params["cross_tests"]) * len(params["models"])
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    cards = sorted(path.name for path in (tiny_pipeline / "reports" / "cards").iterdir())
    assert cards == sorted(f"{m}-{d}.md" for d in params["datasets"] for m in params["models"])
    card = (tiny_pipeline / "reports" / "cards" / "resnet18-lungs.md").read_text()
    for heading in ("## Model details", "## Intended use", "## Training data", "## Evaluation data",
                    "## Quantitative analyses", "### Where it looks", "## Caveats and recommendations"):
        assert f"\n{heading}" in card, heading
    assert "Not for clinical use" in card and "lungs_segmented" in card


@pytest.mark.system
def test_dvc_plots_render_offline_in_chromium(scratch_repo, tmp_path):
    """`dvc plots show` writes a page that loads nothing (Vega comes inside it, .dvc/config's html_template): in
    Chromium with every request but the page refused, each plot is drawn; one ROC figure per dataset, all models."""
    from playwright.sync_api import sync_playwright

    require_system(CHROMIUM, "Debian's chromium (`apt-get install -y chromium`)")
    out = tmp_path / "plots"
    dvc_in(scratch_repo, "plots", "show", "-o", str(out))
    page_file = out / "index.html"
    html = page_file.read_text()
    assert "cdn.jsdelivr.net" not in html and "<script src=" not in html
    params = tiny_pipeline_params()
    for dataset in params["datasets"]:
        assert f"reports/plots/evaluate/{dataset}/roc.json" in html
    messages, errors, requests = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            local = out.as_uri() + "/"
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(local) else route.abort())
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri(), wait_until="load")
            # vega-embed replaces each plot's div content with its chart, drawn on a canvas: wait until every plot of
            # the page is drawn, or fail on time.
            plots = html.count("vegaEmbed(")
            page.wait_for_function(f"() => document.querySelectorAll('.vega-embed canvas').length >= {plots}",
                                   timeout=60_000)
            drawn = page.evaluate("() => document.querySelectorAll('.vega-embed canvas').length")
            page.screenshot(path=tmp_path / "plots.png", full_page=True)
        finally:
            browser.close()
    assert errors == [] and [m for m in messages if m.startswith("error")] == []
    assert requests and all(url.startswith(local) for url in requests), "the page loads nothing but its own files"
    assert drawn == plots > 2 * len(params["datasets"])


def _edit_params(repo: Path, edit) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    edit(params)
    write_params(repo, params)


def test_editing_evaluate_params_invalidates_only_evaluate(scratch_repo):
    repo = scratch_repo
    _edit_params(repo, lambda p: p["evaluate"].update(bootstrap_resamples=150))
    params = tiny_pipeline_params()
    # explain and the segmenter's evaluation read the bootstrap settings too: their intervals are made like evaluate's.
    assert changed_stages(repo) == ({f"evaluate@{d}" for d in params["datasets"]}
                                    | {f"explain@{m}-{d}" for m in params["models"] for d in params["datasets"]}
                                    | {f"crosstest@test{i}" for i in range(len(params["cross_tests"]))}
                                    | {f"segment_{s}@{d}" for s in ("evaluate", "explain")
                                       for d in params["segment"]["evaluate_on"]}
                                    | {f"probe_evaluate@{d}" for d in params["probe"]["datasets"]}
                                    | {f"probe_explain@{m}-{d}" for m in params["probe"]["models"]
                                       for d in params["probe"]["datasets"]}
                                    | {f"probe_crosstest@test{i}" for i in range(len(params["probe"]["cross_tests"]))})
    _edit_params(repo, lambda p: p["evaluate"].update(bootstrap_resamples=100, confidence_level=0.9))
    # The report prints the level in its table, so it reads that one key too.
    assert "report" in changed_stages(repo)


def test_adding_a_params_section_and_a_library_module_invalidates_nothing(scratch_repo):
    """A new stage's section and code must not re-run the existing stages (issue: every change re-ran everything)."""
    repo = scratch_repo
    _edit_params(repo, lambda p: p.update(calibrate={"bins": 8}))
    (repo / "src" / "cxr" / "calibrate").mkdir()
    (repo / "src" / "cxr" / "calibrate" / "__init__.py").write_text('"""Temperature scaling of trained models."""\n')
    assert changed_stages(repo) == set()
    # The same edit inside a package that stages do read is seen: the check above can fail.
    (repo / "src" / "cxr" / "metrics" / "calibrate.py").write_text('"""Temperature scaling of trained models."""\n')
    assert changed_stages(repo)


def test_changing_one_model_param_invalidates_only_that_model(scratch_repo):
    repo = scratch_repo
    _edit_params(repo, lambda p: p["model"]["resnet18"].update(lr=0.002))
    # The report too: its model cards print each model's params.
    assert changed_stages(repo) == {"train@resnet18-full", "train@resnet18-lungs", "probe_train@resnet18-outside",
                                    "probe_train@resnet18-shortcut_full", "report"}


def test_an_experiment_on_one_model_reruns_only_that_model(retrained):
    repo, lock_before, lock_after = retrained
    moved = {name for name in lock_after if lock_after[name] != lock_before[name]}
    # evaluate@<dataset> scores every model of the dataset in one process: it runs again, and only the retrained
    # model's files change (the pull-request report's test below).
    allowed = {*(f"{s}@{RETRAINED}-{d}" for s in ("train", "explain") for d in ("full", "lungs")),
               "evaluate@full", "evaluate@lungs",
               *(f"crosstest@test{i}" for i in range(len(tiny_pipeline_params()["cross_tests"]))), "report"}
    assert {f"train@{RETRAINED}-full", f"train@{RETRAINED}-lungs"} <= moved <= allowed
    shown = json.loads(dvc_in(repo, "exp", "show", "--json"))
    assert "0.002" in json.dumps(shown)


def test_the_pr_report_shows_what_a_params_change_moved(retrained, tmp_path, monkeypatch):
    """The README's `cxr pr-report`, the comment of the pull-request workflow: the workspace (InceptionV3 retrained
    at another learning rate) against the committed baseline."""
    from cxr.cli import main

    repo, _, _ = retrained
    monkeypatch.chdir(repo)
    assert main(["pr-report", "--base", "HEAD", "--out", str(tmp_path / "pr")]) == 0
    report = (tmp_path / "pr" / "report.md").read_text()
    params, metrics, plots = (report.split(f"### {name}")[1].split("###")[0] for name in ("Params", "Metrics", "Plots"))
    assert f"model.{RETRAINED}.lr" in params and "0.002" in params and len(params.strip().splitlines()) == 3
    headline, details = metrics.split("<details>")
    listed = {line.split("|")[1].strip() for line in details.splitlines() if line.startswith("| metrics/")}
    # Exactly the metrics files the experiment changed (git's account; at this scale a retrained model may well
    # score the same), and those are the retrained model's; the headline's lines name its runs only.
    changed = set(run_in(repo, "git", "diff", "--name-only", "HEAD", "--", "metrics").split()) - {"metrics/headline.json"}
    assert listed == changed and changed, (listed, changed)
    assert all(RETRAINED in path for path in listed), listed
    scores = [line.split("|")[2].strip() for line in headline.splitlines() if line.startswith("| metrics/headline.json")]
    assert all(key.endswith(f"/{RETRAINED}") for key in scores), scores
    figures = {path.name for path in (tmp_path / "pr" / "plots").iterdir()}
    assert {f"reports_train_full_{RETRAINED}.png", f"reports_train_lungs_{RETRAINED}.png"} <= figures
    assert all(RETRAINED in name or name.endswith(("comparison.png", "explanations.png", "zones.png")) for name in figures)
    assert all(f'<img src="plots/{name}"' in plots for name in figures if not name.startswith("base_"))
    assert (tmp_path / "pr" / "dvc_plots" / "index.html").is_file()
    # The workflow's form: the same report with the figures linked to the run's page.
    assert main(["pr-report", "--base", "HEAD", "--out", str(tmp_path / "pr"), "--plots-url", "https://ci.example/run/1"]) == 0
    linked = (tmp_path / "pr" / "report.md").read_text()
    assert "<img" not in linked and "(https://ci.example/run/1)" in linked
    assert linked.split("### Plots")[0] == report.split("### Plots")[0]


@pytest.mark.parametrize("edit, invalidated", [
    # A source's settings re-index that source only...
    (lambda p: p["source"]["synthetic_hospital2"].update(class_map={"Lung_Opacity": "Pneumonia"}), {"index@synthetic_hospital2"}),
    # ... a view's settings rebuild views, not indexes (and the report, whose model cards name each view).
    (lambda p: p["dataset"]["hospital2_lungs"].update(view="full"), {"prepare@hospital2_lungs", "report"}),
    (lambda p: p["prepare"].update(lung_margin=0.1),
     {f"prepare@{name}" for name in tiny_pipeline_params()["dataset"]}
     | {f"prepare_segmented@{name}" for name in tiny_pipeline_params()["segmented_dataset"]}),
], ids=["source", "view", "prepare"])
def test_data_params_invalidate_only_their_source_or_view(scratch_repo, edit, invalidated):
    _edit_params(scratch_repo, edit)
    assert changed_stages(scratch_repo) == invalidated


EXPORTED, EVALUATED = tiny_pipeline_params()["segment"]["train_on"], tiny_pipeline_params()["segment"]["evaluate_on"]


@pytest.mark.parametrize("edit, invalidated", [
    (lambda p: p["segment"]["train"].update(epochs=2), {"segment_train"}),
    (lambda p: p["segment"].update(label_mode="diagnosis"), {"segment_train"} | {f"segment_export@{d}" for d in EXPORTED}),
    (lambda p: p["segment"].update(confidence=0.5),
     {f"segment_{s}@{d}" for s in ("evaluate", "explain") for d in EVALUATED} | {"prepare_segmented@lungs_segmented"}),
    (lambda p: p["segment"].update(gallery=3), {f"segment_explain@{d}" for d in EVALUATED}),
], ids=["epochs", "label_mode", "confidence", "gallery"])
def test_segment_params_invalidate_only_the_segmentation_stages_that_read_them(scratch_repo, edit, invalidated):
    _edit_params(scratch_repo, edit)
    assert changed_stages(scratch_repo) == invalidated
