"""`cxr inspect`: what the index stage will find in raw sources, and what the sources share, before
anything is written or trained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxr.cli import main
from tests.conftest import tiny_params, write_params
from tests.standins import (
    RADIOGRAPHY_ROOT,
    SIRM,
    brighter,
    class_folders_tree,
    encode,
    film,
    png,
    radiography_tree,
    write_folder,
    write_zip,
    xlsx,
)

# Source name (the path's last part), then the image's path below the layout's root.
SHARED = "radiography:COVID/images/COVID-4.png"
SHARED_COPY = "hospital.zip:COVID-19/shared-copy.png"
NEAR = "radiography:Viral Pneumonia/images/Viral Pneumonia-4.png"
NEAR_COPY = "hospital.zip:Normal/also-viral.png"


@pytest.fixture
def sources(workdir: Path) -> tuple[Path, Path]:
    """A Radiography-layout folder and a class-folders zip from another hospital that share two films:
    one exactly under the same class, one re-exported (+2 grey levels) under another class."""
    radiography = radiography_tree(n=3, seed=9100)
    radiography[f"{RADIOGRAPHY_ROOT}COVID/images/COVID-4.png"] = png(film(9000))
    radiography[f"{RADIOGRAPHY_ROOT}Viral Pneumonia/images/Viral Pneumonia-4.png"] = png(film(9001))
    hospital = class_folders_tree(n=3, seed=9500)
    hospital["COVID-19/shared-copy.png"] = png(film(9000))
    hospital["Normal/also-viral.png"] = png(brighter(film(9001), 2))
    return (write_folder(radiography, workdir / "sources" / "radiography"),
            write_zip(hospital, workdir / "sources" / "hospital.zip", wrapper="hospital"))


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


def test_text_names_layouts_counts_and_shared_images(sources, workdir, capsys, no_network):
    before = files_under(workdir)
    assert main(["inspect", *map(str, sources)]) == 0
    out = capsys.readouterr().out
    assert "layout radiography" in out and "layout class-folders" in out
    # Radiography: 4 COVID, 4 Viral Pneumonia, 3 Normal kept; its 3 Lung_Opacity films dropped with their class.
    assert "11 kept, 0 skipped, 3 dropped with their class (Lung_Opacity 3)" in out
    assert "Lung_Opacity -> dropped" in out
    assert "across sources: 2 shared image pairs (1 exact), 1 with different classes" in out
    assert f"{SHARED} (COVID-19) ~ {SHARED_COPY} (COVID-19) exact" in out
    assert f"{NEAR} (Pneumonia) ~ {NEAR_COPY} (Normal)" in out
    assert not no_network
    assert files_under(workdir) == before  # inspecting writes nothing


def test_json_has_both_reports_and_the_shared_pairs(sources, capsys):
    assert main(["inspect", *map(str, sources), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    radiography, hospital = found["sources"]
    assert (radiography["source"], radiography["kind"], radiography["layout"]) == ("radiography", "folder", "radiography")
    assert (hospital["source"], hospital["kind"], hospital["layout"]) == ("hospital.zip", "zip", "class-folders")
    assert radiography["images_dropped_by_class"] == {"Lung_Opacity": 3}
    for report, kept in ((radiography, {"COVID-19": 4, "Pneumonia": 4, "Normal": 3}),
                         (hospital, {"COVID-19": 4, "Pneumonia": 3, "Normal": 4})):
        assert {label: sum(c[label] for c in report["counts"].values()) for label in kept} == kept
    assert sorted(found["shared_images"], key=lambda pair: pair["a"]) == [
        {"a": SHARED, "a_class": "COVID-19", "b": SHARED_COPY, "b_class": "COVID-19", "exact": True},
        {"a": NEAR, "a_class": "Pneumonia", "b": NEAR_COPY, "b_class": "Normal", "exact": False},
    ]


def test_missing_path_is_an_error_naming_it(sources, workdir, capsys):
    missing = workdir / "sources" / "not-downloaded.zip"
    assert main(["inspect", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err
    # The sources that can be read are still reported.
    assert main(["inspect", str(sources[0]), str(missing), "--json"]) == 1
    captured = capsys.readouterr()
    assert [report["layout"] for report in json.loads(captured.out)["sources"]] == ["radiography"]
    assert str(missing) in captured.err


def test_forced_layout_that_does_not_fit_is_an_error(sources, capsys):
    assert main(["inspect", str(sources[1]), "--layout", "kermany"]) == 1
    err = capsys.readouterr().err
    assert "hospital.zip" in err and "kermany" in err


def shortcut_flags(folder: Path, capsys) -> tuple[list[str], str]:
    assert main(["inspect", str(folder), "--json"]) == 0
    flags = json.loads(capsys.readouterr().out)["sources"][0]["shortcut_flags"]
    assert main(["inspect", str(folder)]) == 0
    return flags, capsys.readouterr().out


def test_a_class_stored_in_its_own_format_is_flagged(workdir, capsys):
    tree = class_folders_tree(n=4, seed=9700)
    plain_flags, _ = shortcut_flags(write_folder(tree, workdir / "plain"), capsys)
    assert not [flag for flag in plain_flags if "file format" in flag]

    for i in range(1, 5):  # COVID-19 films came as JPEG, everything else as PNG
        del tree[f"COVID-19/img-{i}.png"]
        tree[f"COVID-19/img-{i}.jpg"] = encode(film(9700 + i), "JPEG", quality=95)
    flags, text = shortcut_flags(write_folder(tree, workdir / "jpeg"), capsys)
    covid = [flag for flag in flags if flag.startswith("COVID-19: file format")]
    assert len(covid) == 1 and "'JPEG'" in covid[0]
    assert f"SHORTCUT? {covid[0]}" in text


def test_a_class_with_black_borders_is_flagged(workdir, capsys):
    tree = class_folders_tree(n=4, seed=9800)
    for i in range(1, 5):  # Pneumonia films were scanned with a black frame
        framed = np.zeros((64, 64), np.uint8)
        framed[6:-6, 6:-6] = film(9800 + 100 + i)[6:-6, 6:-6]
        tree[f"Pneumonia/img-{i}.png"] = png(framed)
    flags, _ = shortcut_flags(write_folder(tree, workdir / "framed"), capsys)
    assert [flag for flag in flags if flag.startswith("Pneumonia: border pattern")]
    assert "'black'" in next(flag for flag in flags if flag.startswith("Pneumonia: border pattern"))


def test_console_script(sources, workdir):
    """The installed `cxr` entry point, as a user runs it, from a folder that is no checkout."""
    script = Path(sys.executable).with_name("cxr")
    assert script.is_file(), "the package is not installed with its console script (pip install -e .)"
    done = subprocess.run([str(script), "inspect", str(sources[1]), "--json"], cwd=workdir, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["sources"][0]
    assert (report["layout"], report["kind"], report["images_kept"]) == ("class-folders", "zip", 11)


@pytest.fixture
def kaggle_zip(workdir: Path) -> Path:
    """A Radiography Database zip as Kaggle ships it: metadata sheets beside the class folders (one of them
    broken, which the layout reports with a warning), and a file that is no image under an image's name."""
    tree = radiography_tree(n=3, seed=9900)
    header = ["FILE NAME", "FORMAT", "SIZE", "URL"]
    tree[f"{RADIOGRAPHY_ROOT}COVID.metadata.xlsx"] = xlsx([header] + [[f"COVID-{i}", "PNG", "256*256", SIRM] for i in (1, 2, 3)])
    tree[f"{RADIOGRAPHY_ROOT}Normal.metadata.xlsx"] = b"PK not really a workbook"
    tree[f"{RADIOGRAPHY_ROOT}Normal/images/Normal-9.png"] = b"exported from PACS on 2020-04-01\n"
    return write_zip(tree, workdir / "Kaggle.zip")


def test_json_alone_on_stdout_and_text_without_python_reprs(kaggle_zip, capsys):
    assert main(["inspect", str(kaggle_zip), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))["sources"][0]
    assert "Normal.metadata.xlsx" in captured.err  # the broken sheet's warning, beside the report
    assert report["sources"]["COVID-19"] == {SIRM: 3}
    # Three films a class leave none for a test split: the baseline is null, not NaN.
    assert report["metadata_baseline"]["accuracy"] is None and report["metadata_baseline"]["test_images"] == 0

    assert main(["inspect", str(kaggle_zip)]) == 0
    text = capsys.readouterr().out
    assert "{" not in text and "<_io" not in text
    assert "Normal/images/Normal-9.png: unreadable image (not an image" in text  # named by the film, not a buffer
    assert "PNG L 8-bit 3" in text and "metadata-only baseline: not computed (no test split)" in text


def test_class_map_option_and_the_configured_source(sources, workdir, capsys):
    radiography = str(sources[0])
    assert main(["inspect", radiography, "--json", "--class-map", "Lung_Opacity=Pneumonia", "--class-map", "COVID="]) == 0
    report = json.loads(capsys.readouterr().out)["sources"][0]
    assert report["class_map"] == {"COVID": None, "Lung_Opacity": "Pneumonia", "Normal": "Normal",
                                   "Viral Pneumonia": "Pneumonia"}
    assert report["images_dropped_by_class"] == {"COVID": 4}

    assert main(["inspect", radiography, "--class-map", "COVID=Influenza"]) == 2
    assert "Influenza" in capsys.readouterr().err

    # A path that params.yaml names is read as the index stage will read it: with the source's class map.
    params = tiny_params()
    params["source"]["synthetic_hospital2"].update(path=radiography, class_map={"Lung_Opacity": "Normal", "Normal": None})
    write_params(workdir, params)
    assert main(["inspect", radiography, "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)["sources"][0]
    assert report["images_dropped_by_class"] == {"Normal": 3}
    assert report["class_map"]["Lung_Opacity"] == "Normal"
    assert "source.synthetic_hospital2" in captured.err
    assert main(["inspect", radiography, "--json", "--class-map", "Normal=null", "--class-map", "Lung_Opacity=null"]) == 0
    assert json.loads(capsys.readouterr().out)["sources"][0]["images_dropped_by_class"] == {"Normal": 3, "Lung_Opacity": 3}
