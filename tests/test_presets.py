"""`cxr preset` and `cxr check`: one command switches params.yaml to a documented preset, changing only the keys
it sets, and what results is a whole pipeline: every name one section gives another exists and is used."""

from __future__ import annotations

import difflib
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from cxr import cli
from cxr.cli.check import check_params, section_schemas
from cxr.params import load_params
from tests.conftest import REPO, copy_pipeline, dvc_in, run_in

PRESETS = sorted(path.stem for path in (REPO / "presets").glob("*.yaml"))
KAGGLE_ZIP = "data/raw/COVID-19_Radiography_Dataset.zip"


@pytest.fixture
def checkout(workdir):
    shutil.copy(REPO / "params.yaml", workdir / "params.yaml")
    shutil.copytree(REPO / "presets", workdir / "presets")
    return workdir


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines of a line-by-line diff."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [line[2:] for line in diff if line.startswith("- ")], [line[2:] for line in diff if line.startswith("+ ")]


def test_the_default_params_are_a_whole_pipeline():
    assert check_params(REPO / "params.yaml") == []


def dotted_settings(preset: str) -> dict:
    """The keys a preset file sets, after those of its base, read from the files themselves."""
    settings = yaml.safe_load((REPO / "presets" / f"{preset}.yaml").read_text())
    base = settings.pop("base", None)
    return {**(dotted_settings(base) if base else {}), **settings}


def value_at(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


def without(params: dict, dotted_keys) -> dict:
    """params without the given keys (and without the generators, which a preset drops when unused)."""
    params = json.loads(json.dumps(params))
    for dotted in [*dotted_keys, "generate", "generate_radiography"]:
        *parents, key = dotted.split(".")
        node = params
        for part in parents:
            node = node.get(part, {})
        node.pop(key, None)
    return params


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_sets_its_keys_and_nothing_else(checkout, capsys, preset):
    before = yaml.safe_load((checkout / "params.yaml").read_text())
    settings = dotted_settings(preset)
    assert cli.main(["preset", preset]) == 0
    after = yaml.safe_load((checkout / "params.yaml").read_text())
    for key, value in settings.items():
        assert value_at(after, key) == value, key
    assert without(after, settings) == without(before, settings)
    # Generators nothing reads any more are dropped, and said so.
    out = capsys.readouterr().out
    for section in ("generate", "generate_radiography"):
        assert (after[section] == {}) == (f"  {section}: dropped" in out)
    load_params(section_schemas(after), checkout / "params.yaml")


def test_a_preset_whose_download_is_missing_names_the_path_and_the_fix(checkout):
    assert cli.main(["preset", "study"]) == 0
    assert check_params(checkout / "params.yaml") == [
        f"  - source.radiography.path: {KAGGLE_ZIP} does not exist: download it there and `dvc add {KAGGLE_ZIP}`, "
        f"or point the path at your copy"]


def test_a_preset_keeps_comments_and_number_spelling(checkout):
    before = (checkout / "params.yaml").read_text()
    assert cli.main(["preset", "study"]) == 0
    text = (checkout / "params.yaml").read_text()
    removed, added = changed_lines(before, text)
    untouched = [line for line in before.splitlines() if line not in removed]
    assert "# Every knob of the pipeline." in text and "    horizontal_flip: false  # anatomy is not mirror-symmetric (heart on the left)" in text
    assert "  weight_decay: 1.0e-4" in untouched and "    lr: 1.0e-3" in untouched, "number spelling kept"
    assert "  scale: [0.9, 1.1]" not in removed and "segment:" in untouched
    assert "  epochs: 5" in added and f"  epochs: {yaml.safe_load(before)['train']['epochs']}" in removed
    # The inline comment of a changed key stays, in its column.
    assert "  image_size: 299           # stored square size; models resize from it to their own input size" in added


def test_a_preset_changes_only_the_lines_of_the_keys_it_sets(checkout, capsys):
    before = (checkout / "params.yaml").read_text()
    assert cli.main(["preset", "radiography", "--set", "train.epochs=4", "--set", "model.resnet18.lr=2.0e-3"]) == 0
    after = (checkout / "params.yaml").read_text()
    removed, added = changed_lines(before, after)
    sections = {"generate", "generate_radiography", "source", "dataset", "segmented_dataset", "probe", "shortcut",
                "cross_tests", "train", "model"}
    # Every removed or added line lies inside one of the sections the preset and --set name.
    owner, owners = None, set()
    for line in after.splitlines() + before.splitlines():
        if line and not line.startswith((" ", "#")):
            owner = line.split(":")[0]
        if (line in added or line in removed) and line.strip():
            owners.add(owner)
    assert owners <= sections, owners - sections
    assert "  epochs: 4" in added and "    lr: 0.002" in added
    assert sum(line.startswith("    lr: ") for line in removed) == 1, "only resnet18's lr moved"
    # The probe's models line was not named, so it is not rewritten.
    assert "  models: [resnet18]" not in removed


def test_unknown_keys_are_refused_with_the_nearest_valid_one(checkout, capsys):
    before = (checkout / "params.yaml").read_bytes()
    for setting, expected in [("train.epochz=3", "unknown key 'train.epochz'; did you mean 'train.epochs'?"),
                              ("modle.resnet18.lr=1", "unknown key 'modle.resnet18.lr'; did you mean 'model'?"),
                              ("train.epochs", "expected KEY=VALUE"),
                              ("train.epochs=[3", "the value is not valid YAML")]:
        assert cli.main(["preset", "radiography", "--set", setting]) == 2
        assert expected in capsys.readouterr().err, setting
    (checkout / "presets" / "typo.yaml").write_text("# A preset with a typo\ntrain.batchsize: 8\n")
    assert cli.main(["preset", "typo"]) == 2
    assert "unknown key 'train.batchsize'; did you mean 'train.batch_size'?" in capsys.readouterr().err
    assert cli.main(["preset", "nih"]) == 2
    assert "no preset 'nih'" in capsys.readouterr().err
    assert (checkout / "params.yaml").read_bytes() == before, "a refused preset leaves params.yaml alone"


def test_a_preset_that_would_break_the_pipeline_is_refused(checkout, capsys):
    before = (checkout / "params.yaml").read_bytes()
    # Valid on its own, but the dataset names a source the preset removed.
    assert cli.main(["preset", "radiography", "--set", "dataset.outside.source=synthetic"]) == 2
    error = capsys.readouterr().err
    assert "params.yaml is unchanged" in error
    assert "dataset.outside.source: no source 'synthetic' (sources: radiography)" in error
    assert cli.main(["preset", "radiography", "--set", "train.epochs=-5"]) == 2
    assert "train.epochs: Input should be greater than or equal to 1" in capsys.readouterr().err
    assert (checkout / "params.yaml").read_bytes() == before


@pytest.mark.parametrize("change, expected", [
    (lambda p: p["dataset"]["lungs"].update(source="kermany"), "dataset.lungs.source: no source 'kermany'"),
    (lambda p: p["cross_tests"].append({"trained_on": "full", "tested_on": "nih"}), "cross_tests.3.tested_on: no dataset 'nih'"),
    (lambda p: p["cross_tests"].append({"trained_on": "full", "tested_on": "hospital2_lungs"}),
     "cross_tests.3: 'full' is a full view, 'hospital2_lungs' a lungs view"),
    (lambda p: p["probe"].update(datasets=["outside"], cross_tests=[]),
     "shortcut.dataset: 'shortcut_full' is not in probe.datasets"),
    (lambda p: p["dataset"].update(extra={"source": "synthetic", "view": "full"}), "dataset.extra: is used by no training"),
    (lambda p: p["segment"].update(train_on=["outside"]), "segment.train_on: 'outside' is an outside view"),
    (lambda p: p.update(shortcut=None, probe={"models": [], "datasets": [], "cross_tests": []}, cross_tests=[]),
     "generate_radiography.synthetic_hospital2: writes data/raw/synthetic-hospital2.zip, which no source in use reads"),
])
def test_check_names_each_broken_link(tmp_path, change, expected):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    change(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert any(expected in line for line in check_params(tmp_path / "params.yaml")), check_params(tmp_path / "params.yaml")


def test_listing_names_every_preset(checkout, capsys):
    assert cli.main(["preset"]) == 0
    listed = capsys.readouterr().out
    assert {line.split(":")[0] for line in listed.splitlines()} == set(PRESETS)


def write_kaggle_standin(path: Path) -> None:
    """A tiny download in the Kaggle COVID-19 Radiography Database layout, with its metadata sheet beside."""
    from cxr.synthetic.generator import write_radiography_zip

    path.parent.mkdir(parents=True, exist_ok=True)
    write_radiography_zip(path, seed=3, images_per_class=14, image_size=72, mask_size=64, progress=False)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("COVID-19_Radiography_Dataset/COVID.metadata.csv", "FILE NAME,FORMAT,SIZE,URL\n")


def write_qu_ex_standin(path: Path) -> None:
    """A tiny COVID-QU-Ex archive: Lung Segmentation Data with its Train/Val/Test folders and lung masks."""
    import io

    from PIL import Image

    from cxr.synthetic.generator import render_case

    root = "Lung Segmentation Data/Lung Segmentation Data"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for c, (folder, label) in enumerate({"COVID-19": "COVID-19", "Non-COVID": "Pneumonia", "Normal": "Normal"}.items()):
            for n in range(14):
                split = ("Train", "Train", "Val", "Test")[n % 4]
                image, mask = render_case(np.random.default_rng([5, c, n]), label, 72)
                for kind, pixels in (("images", image), ("lung masks", mask.astype(np.uint8) * 255)):
                    buffer = io.BytesIO()
                    Image.fromarray(pixels).save(buffer, format="PNG")
                    archive.writestr(f"{root}/{split}/{folder}/{kind}/{folder.lower()}_{n}.png", buffer.getvalue())


# Each preset's download as the preset names it, and a stand-in writer in that layout.
STANDINS = {"radiography": ("radiography", KAGGLE_ZIP, write_kaggle_standin, "radiography"),
            "study": ("radiography", KAGGLE_ZIP, write_kaggle_standin, "radiography"),
            "covid-qu-ex": ("covid_qu_ex", "data/raw/COVID-QU-Ex.zip", write_qu_ex_standin, "covid-qu-ex")}


def test_every_preset_has_a_stand_in_in_its_layout(checkout):
    assert set(STANDINS) == set(PRESETS)
    for preset, (source, path, _, layout) in STANDINS.items():
        shutil.copy(REPO / "params.yaml", checkout / "params.yaml")
        assert cli.main(["preset", preset]) == 0
        assert yaml.safe_load((checkout / "params.yaml").read_text())["source"] == {source: {
            "path": path, "layout": layout, "class_map": {}, "own_split": False,
            "patient_id_pattern": None if layout == "radiography" else "layout"}}, preset


def missing_dependencies(repo: Path) -> set[str]:
    """Data dependencies of the resolved pipeline that neither exist nor are another stage's output (what would
    stop `dvc repro` half-way)."""
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        stages = list(dvc_repo.index.stages)
        outs = {Path(out.def_path) for stage in stages for out in stage.outs}
        deps = {Path(dep.def_path) for stage in stages for dep in stage.deps}
    return {str(dep) for dep in deps if not (repo / dep).exists()
            and not any(dep == out or out in dep.parents or dep in out.parents for out in outs)}


@pytest.mark.slow
def test_every_preset_leaves_no_missing_dependency(tmp_path):
    """With the download where the preset points, every stage the params name finds its inputs."""
    copy_pipeline(tmp_path)
    shutil.copytree(REPO / "presets", tmp_path / "presets")
    run_in(tmp_path, "git", "init", "-q")
    (tmp_path / "data/raw").mkdir(parents=True)
    for _, path, _, _ in STANDINS.values():
        (tmp_path / path).write_bytes(b"")
    for preset in PRESETS:
        shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
        run_in(tmp_path, "cxr", "preset", preset)
        assert missing_dependencies(tmp_path) == set(), preset
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    assert missing_dependencies(tmp_path) == set()
    (tmp_path / KAGGLE_ZIP).unlink()
    run_in(tmp_path, "cxr", "preset", "radiography")
    assert missing_dependencies(tmp_path) == {KAGGLE_ZIP}


# Tiny sizes and one model: the preset's shape at the cost of a test. ImageNet weights cannot be downloaded here.
TINY = ["prepare.image_size=48", "train.epochs=1", "train.batch_size=8", "models=[resnet18]",
        "model.resnet18.image_size=32", "model.resnet18.weights=none", "evaluate.bootstrap_resamples=100",
        "explain.images_per_class=2", "explain.max_misclassified=2", "explain.road_percentiles=[50]",
        "segment.train.image_size=64", "segment.train.epochs=1", "segment.train.batch_size=8", "segment.gallery=2",
        "device=cpu"]


# Each download layout once; presets that share a download (study is radiography with the study's settings on
# top) are applied one after the other to the same run, as a user switching presets would.
DOWNLOADS = {"radiography": ["radiography", "study"], "covid_qu_ex": ["covid-qu-ex"]}


def test_every_preset_runs_end_to_end_below():
    assert sorted(preset for presets in DOWNLOADS.values() for preset in presets) == PRESETS


@pytest.mark.pipeline
@pytest.mark.parametrize("source", list(DOWNLOADS))
def test_a_download_runs_end_to_end_with_one_preset_command(tmp_path, source):
    """The README's steps on a stand-in download: dvc add, cxr inspect, cxr preset, dvc repro; nothing synthetic
    is generated, every stage the params name runs, and the pipeline is then up to date. A second preset on the
    same download re-runs only what its settings change."""
    first, *others = DOWNLOADS[source]
    _, download, write_standin, layout = STANDINS[first]
    repo = tmp_path
    copy_pipeline(repo)
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")
    shutil.copytree(REPO / "presets", repo / "presets")
    # A clone: the project's history is there before the download is added.
    run_in(repo, "git", "init", "-q")
    run_in(repo, "git", "add", "-A")
    run_in(repo, "git", "commit", "-qm", "clone")
    write_standin(repo / download)
    dvc_in(repo, "add", download)
    inspected = json.loads(run_in(repo, "cxr", "inspect", download, "--json"))
    assert inspected["sources"][0]["layout"] == layout
    for preset in [first, *others]:
        before = yaml.safe_load((repo / "dvc.lock").read_text())["stages"] if (repo / "dvc.lock").exists() else {}
        run_in(repo, "cxr", "preset", preset, *(arg for setting in TINY for arg in ("--set", setting)))
        run_in(repo, "cxr", "check")
        assert missing_dependencies(repo) == set(), preset
        dvc_in(repo, "repro")
        lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
        assert not any(name.startswith("generate") for name in lock) and not (repo / "data/raw/synthetic").exists()
        assert {f"index@{source}", "probe_train@resnet18-outside", "prepare_segmented@lungs_segmented",
                "crosstest@test0", "report"} <= set(lock), preset
        if before:  # the same download under another preset: neither indexed nor segmented again
            assert all(lock[name] == before[name] for name in (f"index@{source}", "segment_train")), preset
        summary = (repo / "reports" / "summary.md").read_text()
        assert f"| {source} |" in summary and "| outside" in summary
        assert json.loads(dvc_in(repo, "status", "--json")) == {}
        assert "up to date" in dvc_in(repo, "repro")
