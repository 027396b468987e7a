"""Raw sources in every supported layout, as folders and as zips: what the index finds, keeps, skips,
groups and splits, and what both views of an indexed source make of it. Also every image format the
index claims to read (PNG, JPEG, BMP, TIFF, DICOM in their bit depths and colour modes).

Fixtures are tiny trees built in memory (relative path -> bytes) from synthetic films, then written
both as a folder and as a zip, so every layout is exercised through both kinds of RawSource.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr.data.index import (
    USABLE_MASKS,
    SourceIndexError,
    build_index,
    read_lung_mask,
    write_index,
)
from cxr.data.layouts import DEFAULT_CLASS_MAP, list_source, map_class
from cxr.data.params import (
    DatasetParams,
    IndexParams,
    PrepareParams,
    SourceParams,
)
from cxr.data.prepare import prepare_view
from cxr.io.arrays import SplitArrays
from cxr.io.images import decode_image
from cxr.io.pixels import UnreadableImage
from cxr.io.sources import RawSource, SourceError
from tests.standins import (
    CLASSES,
    INDEX,
    MAC_JUNK,
    QU_ROOT,
    RADIOGRAPHY_FOLDERS,
    RADIOGRAPHY_ROOT,
    RSNA,
    SIRM,
    SPLITS,
    VIRAL,
    brighter,
    class_folders_tree,
    covid_qu_ex_tree,
    csv_bytes,
    dicom,
    encode,
    film,
    kermany_tree,
    lungs,
    mask_png,
    png,
    radiography_tree,
    segmented_tree,
    study_tree,
    write_folder,
    write_zip,
    xlsx,
)

# --- building trees --------------------------------------------------------------------------------------------


def index_of(path: Path, **source):
    return build_index("src", SourceParams(path=str(path), **source), INDEX, CLASSES)


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {row["name"]: row for row in rows}


def totals(report: dict) -> dict[str, int]:
    """Kept images per class, over all splits."""
    return {label: sum(counts[label] for counts in report["counts"].values()) for label in CLASSES}


def assert_groups_inside_splits(rows: list[dict]) -> None:
    kept = [row for row in rows if row["status"] == "ok"]
    assert kept and all(row["split"] in SPLITS for row in kept)
    for key in ("group", "duplicate_group"):
        splits_of: dict[object, set] = {}
        for row in kept:
            splits_of.setdefault(row[key], set()).add(row["split"])
        assert all(len(s) == 1 for s in splits_of.values()), f"a {key} crosses splits: {splits_of}"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# --- one tree per layout -----------------------------------------------------------------------------------------


# name: (tree builder, layout, root inside the tree, kept per class, dropped per raw class, zip wrapper, zip junk)
LAYOUT_CASES = {
    "radiography": (radiography_tree, "radiography", RADIOGRAPHY_ROOT, {"COVID-19": 4, "Pneumonia": 4, "Normal": 4},
                    {"Lung_Opacity": 4}, "", False),
    "covid-qu-ex": (covid_qu_ex_tree, "covid-qu-ex", QU_ROOT, {"COVID-19": 5, "Pneumonia": 5, "Normal": 5}, {}, "", False),
    "kermany": (kermany_tree, "kermany", "chest_xray/", {"COVID-19": 0, "Pneumonia": 6, "Normal": 6}, {}, "", True),
    "study": (study_tree, "study", "", {"COVID-19": 4, "Pneumonia": 4, "Normal": 4}, {}, "COVID-19 study", False),
    "study-segmented": (segmented_tree, "study-segmented", "", {"COVID-19": 4, "Pneumonia": 4, "Normal": 4}, {},
                        "segmented", False),
    "class-folders": (class_folders_tree, "class-folders", "", {"COVID-19": 4, "Pneumonia": 4, "Normal": 4}, {},
                      "classes", True),
}


@pytest.mark.parametrize("case", list(LAYOUT_CASES))
def test_layout_is_detected_and_zip_reads_like_folder(case, tmp_path):
    """A downloaded zip and the folder it unpacks to are the same source: same rows, hashes and splits."""
    builder, layout, root, kept, dropped, wrapper, junk = LAYOUT_CASES[case]
    tree = builder()
    folder = write_folder(tree, tmp_path / "folder")
    archive = write_zip(tree, tmp_path / "source.zip", wrapper=wrapper, junk=junk)
    prefix = f"{wrapper}/" if wrapper else ""

    folder_listing, zip_listing = list_source(RawSource(folder)), list_source(RawSource(archive))
    assert (folder_listing.layout, folder_listing.root) == (layout, root)
    assert (zip_listing.layout, zip_listing.root) == (layout, prefix + root)

    from_folder, from_zip = index_of(folder), index_of(archive)
    assert from_folder.report["kind"] == "folder" and from_zip.report["kind"] == "zip"
    assert from_folder.report["layout"] == from_zip.report["layout"] == layout
    assert totals(from_folder.report) == kept
    assert from_folder.report["images_dropped_by_class"] == dropped
    assert from_folder.report["images_skipped"] == 0
    # macOS resource forks, .DS_Store and Thumbs.db in the zip are neither images nor "other files".
    assert from_zip.report["files_ignored"] == from_folder.report["files_ignored"]

    # Names are relative to the layout's root, so the zip's extra wrapper folder changes no row.
    assert from_zip.rows == from_folder.rows
    with RawSource(archive, root=from_zip.report["root"]) as source:
        row = from_zip.rows[0]
        assert source.read(row["name"]) == tree[root + row["name"]]
    assert from_zip.report["counts"] == from_folder.report["counts"]
    assert_groups_inside_splits(from_folder.rows)


def test_source_of_missing_path_or_non_zip_file_is_refused(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        RawSource(tmp_path / "nowhere")
    (tmp_path / "data.tar").write_bytes(b"not a zip archive at all")
    with pytest.raises(SourceError, match="not a zip archive"):
        RawSource(tmp_path / "data.tar")
    with pytest.raises(SourceIndexError, match="nowhere"):
        index_of(tmp_path / "nowhere")


def test_clutter_is_not_listed_and_members_read_back(tmp_path):
    tree = {"A/x.png": b"x", "A/.hidden.png": b"h", ".git/config": b"c", "A/Thumbs.db": b"t",
            "__MACOSX/A/._x.png": MAC_JUNK, "__MACOSX/B/y.png": MAC_JUNK, "A/sub/desktop.ini": b"d", "B/y.png": b"y"}
    folder, archive = write_folder(tree, tmp_path / "f"), write_zip(tree, tmp_path / "f.zip")
    for path, kind in ((folder, "folder"), (archive, "zip")):
        with RawSource(path) as source:
            assert source.kind == kind
            assert source.files() == ["A/x.png", "B/y.png"]
            assert source.read("B/y.png") == b"y"


# --- class mapping -----------------------------------------------------------------------------------------------

def test_default_class_map():
    assert map_class("Non-COVID", {}, CLASSES) == "Pneumonia"
    assert map_class("CXR Images", {}, CLASSES) == "COVID-19"
    assert map_class("CXR Images Normal", {}, CLASSES) == "Normal"
    assert map_class("Viral Pneumonia", {}, CLASSES) == "Pneumonia"
    assert map_class("PNEUMONIA", {}, CLASSES) == "Pneumonia"  # case is ignored
    assert map_class("Lung_Opacity", {}, CLASSES) is None
    assert DEFAULT_CLASS_MAP["lung_opacity"] is None
    assert map_class("Tuberculosis", {}, CLASSES) is None  # not ours: dropped, not guessed
    # An override wins over the table; params validation keeps it to our classes.
    assert map_class("Lung_Opacity", {"Lung_Opacity": "Pneumonia"}, CLASSES) == "Pneumonia"
    assert map_class("Normal", {"Normal": None}, CLASSES) is None
    with pytest.raises(ValueError, match="'TB', which is not in classes"):
        SourceParams.model_validate({"path": "x", "class_map": {"Tuberculosis": "TB"}}, context={"classes": CLASSES})


@pytest.mark.parametrize("class_map, kept, dropped", [
    ({}, {"COVID-19": 3, "Pneumonia": 3, "Normal": 3}, {"Lung_Opacity": 3}),
    ({"Lung_Opacity": "Pneumonia"}, {"COVID-19": 3, "Pneumonia": 6, "Normal": 3}, {}),
    ({"Normal": None}, {"COVID-19": 3, "Pneumonia": 3, "Normal": 0}, {"Lung_Opacity": 3, "Normal": 3}),
], ids=["default", "lung-opacity-as-pneumonia", "normal-dropped"])
def test_class_map_overrides(class_map, kept, dropped, tmp_path):
    folder = write_folder(radiography_tree(n=3), tmp_path / "radiography")
    built = index_of(folder, class_map=class_map)
    assert totals(built.report) == kept
    assert built.report["images_dropped_by_class"] == dropped
    expected_map = {"COVID": "COVID-19", "Lung_Opacity": None, "Normal": "Normal", "Viral Pneumonia": "Pneumonia"}
    assert built.report["class_map"] == {**expected_map, **class_map}
    # Dropped images are not rows at all: no split, no place in any duplicate group.
    assert {row["raw_class"] for row in built.rows}.isdisjoint(dropped)


# --- radiography ------------------------------------------------------------------------------------------------


def test_radiography_metadata_gives_source_column(tmp_path):
    tree = radiography_tree(n=3)
    header = ["FILE NAME", "FORMAT", "SIZE", "URL"]
    # Kaggle's sheets name files without suffix and in other case ("NORMAL-1" for Normal-1.png).
    tree[f"{RADIOGRAPHY_ROOT}COVID.metadata.xlsx"] = xlsx([header] + [[f"COVID-{i}", "PNG", "256*256", SIRM]
                                                                      for i in (1, 2, 3)])
    tree[f"{RADIOGRAPHY_ROOT}Normal.metadata.xlsx"] = xlsx([header] + [[f"NORMAL-{i}", "PNG", "256*256", RSNA]
                                                                       for i in (1, 2)])
    tree[f"{RADIOGRAPHY_ROOT}Viral Pneumonia.metadata.csv"] = csv_bytes(
        [header] + [[f"Viral Pneumonia-{i}", "PNG", "256*256", VIRAL] for i in (1, 2, 3)])
    built = index_of(write_folder(tree, tmp_path / "radiography"))

    rows = by_name(built.rows)
    assert rows["COVID/images/COVID-2.png"]["source"] == SIRM
    assert rows["Normal/images/Normal-1.png"]["source"] == RSNA
    assert rows["Normal/images/Normal-3.png"]["source"] == ""  # not in the sheet
    assert rows["Viral Pneumonia/images/Viral Pneumonia-3.png"]["source"] == VIRAL
    assert built.report["sources"] == {"COVID-19": {SIRM: 3}, "Pneumonia": {VIRAL: 3},
                                       "Normal": {RSNA: 2, "(unknown)": 1}}
    # Each class from its own collection is the classic source shortcut.
    assert any(flag.startswith("COVID-19: source collection") for flag in built.report["shortcut_flags"])
    # The sheets are read, not indexed: counted under one reason (its wording is the report's business).
    assert list(built.report["files_ignored"].values()) == [3]


def test_radiography_256px_masks_of_299px_images_are_resized(tmp_path):
    tree = radiography_tree(n=2, size=299, mask_size=256)
    # Some masks are stored 0/1 instead of 0/255: they must read as lungs, not as an empty mask.
    for i in (1, 2):
        s = 1000 + 100 * RADIOGRAPHY_FOLDERS.index("Normal") + i
        tree[f"{RADIOGRAPHY_ROOT}Normal/masks/Normal-{i}.png"] = mask_png(lungs(s, 299), 256, on=1)
    folder = write_folder(tree, tmp_path / "radiography")
    built = index_of(folder)

    kept = [row for row in built.rows if row["status"] == "ok"]
    assert len(kept) == 6 and {row["mask_status"] for row in kept} == {"resized"}
    assert built.report["lung_mask_coverage"] == {"COVID-19": 1.0, "Pneumonia": 1.0, "Normal": 1.0}
    with RawSource(folder, root=built.report["root"]) as source:
        for row in kept:
            folder_name, stem = row["name"].split("/")[0], Path(row["name"]).stem
            s = 1000 + 100 * RADIOGRAPHY_FOLDERS.index(folder_name) + int(stem.rsplit("-", 1)[1])
            mask = read_lung_mask(source, row, film(s, 299), None)
            assert mask.shape == (299, 299)
            # Nearest-neighbour down to 256 and back up loses only border pixels.
            assert iou(mask, lungs(s, 299)) > 0.95, row["name"]


# --- COVID-QU-Ex and Kermany: their own splits -------------------------------------------------------------------

def test_covid_qu_ex_own_split_and_a_duplicate_crossing_it(tmp_path):
    tree = covid_qu_ex_tree()
    leaked = "Train/COVID-19/images/COVID_19 (1).png"
    copy = "Test/COVID-19/images/COVID_19 (9).png"
    tree[QU_ROOT + copy] = png(brighter(film(2001)))  # the same film re-exported into the source's test folder
    tree[QU_ROOT + copy.replace("/images/", "/lung masks/")] = mask_png(lungs(2001))
    folder = write_folder(tree, tmp_path / "qu")

    own = index_of(folder, own_split=True)
    kept = [row for row in own.rows if row["status"] == "ok"]
    assert len(kept) == 16
    assert all(row["split"] == row["own_split"] == row["name"].split("/")[0].lower() for row in kept)
    assert own.report["counts"] == {"train": {"COVID-19": 3, "Pneumonia": 3, "Normal": 3},
                                    "val": {"COVID-19": 1, "Pneumonia": 1, "Normal": 1},
                                    "test": {"COVID-19": 2, "Pneumonia": 1, "Normal": 1}}
    assert own.report["groups_crossing_own_split"] == [sorted([leaked, copy])]
    assert {row["mask_status"] for row in kept} == {"file"}
    assert own.report["root"] == QU_ROOT  # never the Infection subset

    # Our own split keeps the pair together and still warns about the source's split.
    ours = index_of(folder, own_split=False)
    rows = by_name(ours.rows)
    assert rows[leaked]["split"] == rows[copy]["split"]
    assert ours.report["groups_crossing_own_split"] == [sorted([leaked, copy])]
    assert_groups_inside_splits(ours.rows)


def test_own_split_without_split_folders_is_an_error(tmp_path):
    with pytest.raises(SourceIndexError, match="own_split"):
        index_of(write_folder(class_folders_tree(n=2), tmp_path / "classes"), own_split=True)


def test_kermany_subtypes_patients_and_nested_copy(tmp_path):
    archive = write_zip(kermany_tree(), tmp_path / "chest-xray-pneumonia.zip", junk=True)

    ours = index_of(archive)
    rows = ours.rows
    # The nested copy chest_xray/chest_xray/ is the same files again: not indexed, counted as outside.
    assert ours.report["root"] == "chest_xray/"
    assert len(rows) == 12 and all(row["name"].split("/")[0] in SPLITS for row in rows)
    assert list(ours.report["files_ignored"].values()) == [12]
    assert ours.report["duplicate_groups"] == []
    named = by_name(rows)
    assert named["train/PNEUMONIA/person1_bacteria_1.jpeg"]["subtype"] == "bacterial"
    assert named["val/PNEUMONIA/person4_virus_6.jpeg"]["subtype"] == "viral"
    assert named["train/NORMAL/IM-0001-0001.jpeg"]["subtype"] == ""
    assert ours.report["subtypes"]["Pneumonia"] == {"bacterial": 3, "viral": 3}
    assert ours.report["patients"] == 4 and ours.report["patients_with_several_images"] == 1

    person1 = [row for row in rows if row["patient_id"] == "person1"]
    assert len(person1) == 3
    assert len({row["split"] for row in person1}) == 1 and len({row["group"] for row in person1}) == 1
    assert_groups_inside_splits(rows)
    assert ours.report["groups_crossing_own_split"] == [sorted(row["name"] for row in person1)]

    own = index_of(archive, own_split=True)
    assert all(row["split"] == row["own_split"] == row["name"].split("/")[0] for row in own.rows)
    assert own.report["counts"] == {"train": {"COVID-19": 0, "Pneumonia": 3, "Normal": 3},
                                    "val": {"COVID-19": 0, "Pneumonia": 1, "Normal": 1},
                                    "test": {"COVID-19": 0, "Pneumonia": 2, "Normal": 2}}


def test_kermany_patient_pattern_can_be_switched_off(tmp_path):
    built = index_of(write_folder(kermany_tree(nested=False), tmp_path / "k"), patient_id_pattern=None)
    assert {row["patient_id"] for row in built.rows} == {""}
    assert built.report["patients"] == 0


# --- study layouts -----------------------------------------------------------------------------------------------

def test_study_folders_map_to_our_classes(tmp_path):
    built = index_of(write_folder(study_tree(n=3), tmp_path / "study"))
    assert built.report["class_map"] == {"CXR Images": "COVID-19", "CXR Images Normal": "Normal",
                                         "CXR Images Pneumonia": "Pneumonia"}
    assert {row["label"] for row in built.rows if row["raw_class"] == "CXR Images"} == {"COVID-19"}
    assert totals(built.report) == {"COVID-19": 3, "Pneumonia": 3, "Normal": 3}


def test_study_segmented_lungs_are_the_nonblack_region(tmp_path):
    folder = write_folder(segmented_tree(n=3, size=96), tmp_path / "segmented")
    built = index_of(folder)
    assert built.report["layout"] == "study-segmented"
    assert {row["mask_status"] for row in built.rows} == {"from image"}
    assert {row["border"] for row in built.rows} == {"black"}
    with RawSource(folder) as source:
        for row in built.rows:
            k, i = CLASSES.index(row["raw_class"]), int(Path(row["name"]).stem.split("-")[1])
            s = 5000 + 10 * k + i
            pixels = decode_image(source.read(row["name"]), row["name"]).pixels
            assert iou(read_lung_mask(source, row, pixels, None), lungs(s, 96)) > 0.95, row["name"]


def test_forced_layout_must_fit(tmp_path):
    folder = write_folder(class_folders_tree(n=2), tmp_path / "classes")
    with pytest.raises(SourceIndexError, match="kermany"):
        index_of(folder, layout="kermany")
    # Forcing study-segmented on plain films is the user's call: every image is its own lung mask.
    forced = index_of(folder, layout="study-segmented")
    assert forced.report["layout"] == "study-segmented"
    assert {row["mask_status"] for row in forced.rows} == {"from image"}


# --- what is skipped, and why ------------------------------------------------------------------------------------

def test_skip_reasons(tmp_path):
    tree = class_folders_tree(n=3)
    good = png(film(6900))
    jpeg = encode(film(6901), "JPEG")
    truncated_jpeg = jpeg[:len(jpeg) // 2]
    tree.update({
        "COVID-19/empty.png": b"",
        "COVID-19/truncated.png": good[:len(good) // 2],
        "COVID-19/truncated.jpg": truncated_jpeg,
        "Pneumonia/notes.png": b"exported from PACS on 2020-04-01\n",
        "Pneumonia/readme.txt": b"these are chest x-rays\n",
        "Normal/constant.png": png(np.full((64, 64), 128, np.uint8)),
        "Normal/thumbnail.png": png(film(6902)[:6, :6].copy()),
    })
    built = index_of(write_folder(tree, tmp_path / "classes"))
    rows = by_name(built.rows)
    expected = {"COVID-19/empty.png": ("unreadable image", "empty file"),
                "COVID-19/truncated.png": ("unreadable image", "truncated"),
                "COVID-19/truncated.jpg": ("unreadable image", "truncated"),
                "Pneumonia/notes.png": ("unreadable image", "not an image"),
                "Pneumonia/readme.txt": ("not an image file", ".txt"),
                "Normal/constant.png": ("constant image", "128"),
                "Normal/thumbnail.png": ("unreadable image", "too small")}
    for name, (status, detail) in expected.items():
        assert rows[name]["status"] == status, name
        assert detail in rows[name]["detail"], (name, rows[name]["detail"])
        assert rows[name]["split"] == "" and rows[name]["group"] == ""
    assert built.report["images_kept"] == 9 and built.report["images_skipped"] == len(expected)
    assert built.report["skipped_by_reason"] == {"unreadable image": 5, "not an image file": 1, "constant image": 1}
    assert {entry["file"] for entry in built.report["skipped"]} == set(expected)
    assert totals(built.report) == {"COVID-19": 3, "Pneumonia": 3, "Normal": 3}


def test_images_over_the_pixel_limit_are_skipped_as_too_large(tmp_path):
    tree = class_folders_tree(n=2)  # 64x64: exactly the smallest allowed limit
    tree["Normal/large.png"] = png(film(6950, 80))
    tree["Normal/large.dcm"] = dicom(film(6951, 80).astype(np.uint16) * 16)
    small = IndexParams(**{**INDEX.model_dump(), "max_image_pixels": 64 * 64})
    built = build_index("src", SourceParams(path=str(write_folder(tree, tmp_path / "c"))), small, CLASSES)
    rows = by_name(built.rows)
    for name in ("Normal/large.png", "Normal/large.dcm"):
        assert rows[name]["status"] == "too large" and "80x80" in rows[name]["detail"], rows[name]
    assert built.report["images_kept"] == 6


# --- duplicates, groups, splits ---------------------------------------------------------------------------------

def test_exact_duplicate_across_classes_skips_every_copy(tmp_path):
    tree = class_folders_tree(n=4)
    same = film(6300)
    tree["COVID-19/shared.png"] = png(same)
    tree["Normal/shared-again.bmp"] = encode(same, "BMP")  # other bytes, same pixels
    tree["Pneumonia/twice-a.png"] = tree["Pneumonia/twice-b.png"] = png(film(6301))  # same class: one group
    built = index_of(write_folder(tree, tmp_path / "classes"))
    rows = by_name(built.rows)
    for name, other in (("COVID-19/shared.png", "Normal/shared-again.bmp"),
                        ("Normal/shared-again.bmp", "COVID-19/shared.png")):
        assert rows[name]["status"] == "same image in several classes"
        assert other in rows[name]["detail"]
        assert rows[name]["split"] == ""
    assert rows["Pneumonia/twice-a.png"]["status"] == rows["Pneumonia/twice-b.png"]["status"] == "ok"
    assert built.report["duplicate_groups"] == [["Pneumonia/twice-a.png", "Pneumonia/twice-b.png"]]
    assert built.report["skipped_by_reason"] == {"same image in several classes": 2}


def test_near_duplicates_form_one_group_in_one_split(tmp_path):
    tree = class_folders_tree(n=5)
    tree["COVID-19/img-1-reexported.png"] = png(brighter(film(6001)))
    # Across classes a near-duplicate may be two real scans: kept, but together and reported.
    tree["Normal/img-2-like-covid.png"] = png(brighter(film(6002), 2))
    built = index_of(write_folder(tree, tmp_path / "classes"))
    rows = by_name(built.rows)
    assert all(row["status"] == "ok" for row in built.rows)
    pair = ["COVID-19/img-1-reexported.png", "COVID-19/img-1.png"]
    cross = ["COVID-19/img-2.png", "Normal/img-2-like-covid.png"]
    assert sorted(built.report["duplicate_groups"]) == sorted([pair, cross])
    assert built.report["cross_class_duplicate_groups"] == [cross]
    for names in (pair, cross):
        assert len({rows[n]["duplicate_group"] for n in names}) == 1
        assert len({rows[n]["split"] for n in names}) == 1
    others = [row["duplicate_group"] for name, row in rows.items() if name not in pair + cross]
    assert len(set(others)) == len(others)  # distinct films are never grouped
    assert_groups_inside_splits(built.rows)


def test_split_follows_the_requested_fractions_per_class(tmp_path):
    built = index_of(write_folder(class_folders_tree(n=20), tmp_path / "classes"))
    for label in CLASSES:
        # 20 images of singleton groups: 14 / 3 / 3 is the closest to 0.7 / 0.15 / 0.15.
        assert [built.report["counts"][split][label] for split in SPLITS] == [14, 3, 3]


# --- both views share the index's split --------------------------------------------------------------------------

def views_tree() -> tuple[dict[str, bytes], dict[str, str]]:
    """Class folders with masks, some unusable; Normal's are all good so every lungs split has images."""
    tree, expected = {}, {}
    for k, cls in enumerate(CLASSES):
        for i in range(1, 7):
            s = 7000 + 10 * k + i
            tree[f"{cls}/c{i}.png"] = png(film(s))
            tree[f"{cls}/masks/c{i}.png"] = mask_png(lungs(s))
            expected[f"{cls}/c{i}.png"] = "file"
    del tree["COVID-19/masks/c1.png"]
    tree["COVID-19/masks/c2.png"] = png(np.zeros((64, 64), np.uint8))
    tree["Pneumonia/masks/c1.png"] = b"\x89PNG this mask was cut off"
    tree["Pneumonia/masks/c2.png"] = png(np.full((32, 64), 255, np.uint8))
    tree["Pneumonia/masks/c3.png"] = mask_png(lungs(7000 + 10 + 3), 48)
    expected.update({"COVID-19/c1.png": "missing", "COVID-19/c2.png": "empty", "Pneumonia/c1.png": "unreadable",
                     "Pneumonia/c2.png": "shape differs", "Pneumonia/c3.png": "resized"})
    return tree, expected


def test_mask_statuses(tmp_path):
    tree, expected = views_tree()
    built = index_of(write_folder(tree, tmp_path / "classes"))
    assert built.report["layout"] == "class-folders"
    assert {row["name"]: row["mask_status"].split(":")[0] for row in built.rows} == expected
    assert "mask 64x32, image 64x64" in by_name(built.rows)["Pneumonia/c2.png"]["mask_status"]
    assert built.report["lung_masks"]["COVID-19"] == {"file": 4, "missing": 1, "empty": 1}
    assert built.report["lung_mask_coverage"]["Normal"] == 1.0


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_both_views_share_the_split(kind, workdir):
    tree, expected = views_tree()
    raw = write_folder(tree, workdir / "raw") if kind == "folder" else write_zip(tree, workdir / "raw.zip", "raw")
    built = index_of(raw)
    index = workdir / "data" / "index" / "src"
    write_index(index, workdir / "reports" / "src.json", built)
    size = 32
    prepare = PrepareParams(image_size=size, lung_margin=0.05)
    full_report, lungs_report = (
        prepare_view(view, DatasetParams(source="src", view=view), prepare, CLASSES, index,
                     workdir / "data" / "prepared" / view, workdir / "reports" / f"{view}.json")
        for view in ("full", "lungs"))

    rows = by_name(built.rows)
    split_of: dict[str, dict[str, str]] = {"full": {}, "lungs": {}}
    for view in ("full", "lungs"):
        for split in SPLITS:
            arrays = SplitArrays.load(Path("data/prepared") / view / split)
            assert arrays.images.shape == (len(arrays), size, size) and len(arrays) > 0
            for name, label in zip(arrays.names.tolist(), arrays.labels.tolist()):
                assert rows[name]["split"] == split and CLASSES[label] == rows[name]["label"]
                split_of[view][name] = split
            if view == "lungs":
                # Nothing of the film outside the lungs reaches a lungs-view model.
                assert not np.asarray(arrays.images)[~np.asarray(arrays.masks)].any()
    assert set(split_of["full"]) == set(rows)
    assert all(split_of["full"][name] == split for name, split in split_of["lungs"].items())
    unusable = {name for name, status in expected.items() if status not in USABLE_MASKS}
    assert set(split_of["full"]) - set(split_of["lungs"]) == unusable
    assert {entry["file"] for entry in lungs_report["skipped"]} == unusable
    assert full_report["images_skipped"] == 0 and lungs_report["images_kept"] == len(rows) - len(unusable)
    assert lungs_report["masks_resized"] == 1


# --- image formats -----------------------------------------------------------------------------------------------


def jpeg2000_garbage(shape: tuple[int, int] = (64, 64)) -> bytes:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    return dicom(np.zeros(shape, np.uint16), syntax=JPEG2000Lossless,
                 pixel_data=encapsulate([b"\xff\x4f\xff\x51 definitely not a codestream " * 4]))


def grey_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[:, :, None], 3, axis=2)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


# name: (file bytes, format, mode, bits, how close the decoded pixels are to the film: max abs difference)
FORMAT_FILM = 8000


def format_cases() -> dict[str, tuple[bytes, str, str, int, int]]:
    f = film(FORMAT_FILM)
    return {
        "grey.png": (png(f), "PNG", "L", 8, 0),
        "grey.bmp": (encode(f, "BMP"), "BMP", "L", 8, 0),
        "grey.tif": (encode(f, "TIFF"), "TIFF", "L", 8, 0),
        "grey.jpg": (encode(f, "JPEG", quality=95), "JPEG", "L", 8, 12),
        "grey.jfif": (encode(f, "JPEG", quality=95), "JPEG", "L", 8, 12),
        # R = G = B: the luminance weights add up to one, so grey comes back exactly.
        "colour.png": (png(grey_rgb(f)), "PNG", "RGB", 8, 0),
        "colour.jpg": (encode(grey_rgb(f), "JPEG", quality=95), "JPEG", "RGB", 8, 12),
        "opaque.png": (png(np.dstack([grey_rgb(f), np.full(f.shape, 255, np.uint8)])), "PNG", "RGBA", 8, 0),
    }


@pytest.mark.parametrize("name", list(format_cases()))
def test_decode_8_bit_formats(name):
    data, fmt, mode, bits, tolerance = format_cases()[name]
    decoded = decode_image(data, name)
    assert (decoded.format, decoded.mode, decoded.bits) == (fmt, mode, bits)
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (64, 64)
    assert np.abs(decoded.pixels.astype(int) - film(FORMAT_FILM)).max() <= tolerance


@pytest.mark.parametrize("fmt, dtype", [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2")],
                         ids=["png", "tiff", "tiff-big-endian"])
def test_16_bit_images_use_their_whole_range(fmt, dtype):
    f = film(FORMAT_FILM)
    # 12-bit data in 16-bit containers: a plain conversion to 8 bits would clip nearly all of it to white.
    stored = (f.astype(np.uint16) * 16 + 100).astype(dtype)
    decoded = decode_image(encode(stored, fmt), f"film.{fmt.lower()}")
    assert (decoded.format, decoded.bits) == (fmt, 16) and decoded.mode.startswith("I")
    assert decoded.pixels.min() <= 5 and decoded.pixels.max() >= 250
    assert correlation(decoded.pixels, f) > 0.99
    order = np.argsort(stored.ravel(), kind="stable")
    assert (np.diff(decoded.pixels.ravel()[order].astype(int)) >= 0).all()  # monotonic in the stored value


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_black(mode):
    f = film(FORMAT_FILM)
    inside = np.zeros(f.shape, bool)
    inside[8:56, 8:56] = True
    grey = np.where(inside, f, 255).astype(np.uint8)  # white where transparent, as editors leave it
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    buffer = io.BytesIO()
    if mode == "RGBA":
        Image.fromarray(np.dstack([grey_rgb(grey), alpha]), "RGBA").save(buffer, format="PNG")
    elif mode == "LA":
        Image.fromarray(np.dstack([grey, alpha]), "LA").save(buffer, format="PNG")
    else:
        grey = np.where(inside, np.minimum(f, 254), 255).astype(np.uint8)  # palette entry 255: transparent
        Image.fromarray(grey, "L").convert("P").save(buffer, format="PNG", transparency=255)
    decoded = decode_image(buffer.getvalue(), "cut-out.png")
    assert decoded.mode == mode
    assert not decoded.pixels[~inside].any()
    assert np.array_equal(decoded.pixels[inside], grey[inside])


def test_palette_images_show_their_colours_not_their_indices():
    f = film(FORMAT_FILM)
    picture = Image.fromarray(f, "L").convert("P")
    picture.putpalette([value for index in range(256) for value in (255 - index,) * 3])  # index i shows 255 - i
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    decoded = decode_image(buffer.getvalue(), "palette.png")
    assert decoded.mode == "P"
    assert np.array_equal(decoded.pixels, 255 - np.asarray(picture))


def test_dicom_monochrome1_is_the_inverse_of_monochrome2():
    stored = film(FORMAT_FILM).astype(np.uint16) * 16
    mono2 = decode_image(dicom(stored), "film.dcm")
    mono1 = decode_image(dicom(stored, "MONOCHROME1"), "film.dcm")
    assert (mono2.format, mono2.mode, mono2.bits) == ("DICOM", "MONOCHROME2", 12)
    assert mono1.mode == "MONOCHROME1"
    assert correlation(mono2.pixels, stored) > 0.99
    # Same stored values, opposite display: bone is bright in both after decoding.
    assert np.abs(mono1.pixels.astype(int) + mono2.pixels.astype(int) - 255).max() <= 1


@pytest.mark.parametrize("slope, intercept", [(1, 0), (2, -1000)])
def test_dicom_window_is_applied(slope, intercept):
    stored = film(FORMAT_FILM).astype(np.uint16) * 16  # 0..4080
    centre, width = 2048, 1024  # in stored units; the file gives them in rescaled (modality) units
    data = dicom(stored, WindowCenter=centre * slope + intercept, WindowWidth=width * slope,
                 RescaleSlope=slope, RescaleIntercept=intercept)
    pixels = decode_image(data, "windowed.dcm").pixels.astype(int)
    low, high = centre - width // 2, centre + width // 2
    assert (stored < low).any() and (stored > high).any()
    assert (pixels[stored < low - 4] == 0).all() and (pixels[stored > high + 4] == 255).all()
    inside = (stored > low) & (stored < high)
    # PS3.3 C.11.2.1.2: linear across the window.
    expected = (stored[inside] - low) / width * 255
    assert np.abs(pixels[inside] - expected).max() <= 1.5


def test_dicom_is_recognised_by_its_magic_whatever_its_name():
    stored = film(FORMAT_FILM).astype(np.uint16) * 16
    assert decode_image(dicom(stored), "IMG0001.png").format == "DICOM"


def test_dicom_with_undecodable_compressed_pixels_is_unreadable():
    with pytest.raises(UnreadableImage):
        decode_image(jpeg2000_garbage(), "compressed.dcm")


def test_undecodable_dicom_names_its_transfer_syntax(tmp_path):
    with pytest.raises(UnreadableImage) as raised:
        decode_image(jpeg2000_garbage(), "compressed.dcm")
    assert "JPEG 2000" in str(raised.value) or "1.2.840.10008.1.2.4.90" in str(raised.value)
    tree = {**class_folders_tree(n=2), "Normal/compressed.dcm": jpeg2000_garbage()}
    detail = by_name(index_of(write_folder(tree, tmp_path / "c")).rows)["Normal/compressed.dcm"]["detail"]
    assert "JPEG 2000" in detail or "1.2.840.10008.1.2.4.90" in detail


def test_every_format_through_the_index(tmp_path):
    """One class-folders source mixing every format: each file read, described and kept (or skipped) alike."""
    f = {name: film(8100 + i) for i, name in enumerate("abcdefghijklmn")}
    rgba = np.dstack([grey_rgb(f["i"]), np.full((64, 64), 255, np.uint8)])
    rgba[:4] = 0  # a transparent strip along the top
    palette = Image.fromarray(f["j"], "L").convert("P")
    palette.putpalette([v for index in range(256) for v in (index,) * 3])
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    tree = {
        "COVID-19/a.png": (png(f["a"]), ("PNG", "L", "8")),
        "COVID-19/b.png": (encode(f["b"].astype(np.uint16) * 257), ("PNG", "I;16", "16")),
        "COVID-19/c.jpg": (encode(f["c"], "JPEG", quality=95), ("JPEG", "L", "8")),
        "COVID-19/d.jfif": (encode(f["d"], "JPEG", quality=95), ("JPEG", "L", "8")),
        "Pneumonia/e.bmp": (encode(f["e"], "BMP"), ("BMP", "L", "8")),
        "Pneumonia/f.tif": (encode(f["f"], "TIFF"), ("TIFF", "L", "8")),
        "Pneumonia/g.tiff": (encode(f["g"].astype(np.uint16) * 257, "TIFF"), ("TIFF", "I;16", "16")),
        "Pneumonia/h.png": (png(grey_rgb(f["h"])), ("PNG", "RGB", "8")),
        "Normal/i.png": (png(rgba), ("PNG", "RGBA", "8")),
        "Normal/j.png": (buffer.getvalue(), ("PNG", "P", "8")),
        "Normal/k.dcm": (dicom(f["k"].astype(np.uint16) * 16), ("DICOM", "MONOCHROME2", "12")),
        "Normal/l.dcm": (dicom(f["l"].astype(np.uint16) * 16, "MONOCHROME1"), ("DICOM", "MONOCHROME1", "12")),
        "Normal/m.dicom": (dicom(f["m"].astype(np.uint16) * 16, WindowCenter=2048, WindowWidth=2048),
                           ("DICOM", "MONOCHROME2", "12")),
        "Normal/n.dcm": (jpeg2000_garbage(), None),
    }
    folder = write_folder({name: data for name, (data, _) in tree.items()}, tmp_path / "formats")
    built = index_of(folder)
    assert built.report["layout"] == "class-folders"
    rows = by_name(built.rows)
    for name, (_, described) in tree.items():
        row = rows[name]
        if described is None:
            assert row["status"] == "unreadable image"
            continue
        assert row["status"] == "ok", (name, row["detail"])
        fmt, mode, bits = described
        assert (row["format"], str(row["bits"])) == (fmt, bits), name
        assert mode is None or row["mode"] == mode, name
        assert (row["width"], row["height"]) == (64, 64)
    assert rows["Normal/i.png"]["border"] == "content"  # a strip of transparency is not a black border
    assert built.report["formats"]["Normal"] == {"PNG RGBA 8-bit": 1, "PNG P 8-bit": 1,
                                                  "DICOM MONOCHROME2 12-bit": 2, "DICOM MONOCHROME1 12-bit": 1}
    assert built.report["skipped_by_reason"] == {"unreadable image": 1}
    with RawSource(folder) as source:
        # The index read the same pixels decode_image gives: a view can trust its hashes.
        for name in ("COVID-19/b.png", "Pneumonia/g.tiff", "Normal/l.dcm"):
            pixels = decode_image(source.read(name), name).pixels
            assert correlation(pixels, f[Path(name).stem]) * (-1 if name.endswith("l.dcm") else 1) > 0.99, name


def test_a_single_class_folder_with_images_and_masks_keeps_its_class(tmp_path):
    """One class downloaded alone (`Normal/images`, `Normal/masks`): the class folder is no wrapper."""
    tree = {}
    for i in range(3):
        tree[f"Normal/images/n-{i}.png"] = png(film(9100 + i))
        tree[f"Normal/masks/n-{i}.png"] = mask_png(lungs(9100 + i))
    built = index_of(write_folder(tree, tmp_path / "normal-only"))
    assert built.report["layout"] == "class-folders" and built.report["root"] == ""
    assert totals(built.report) == {"COVID-19": 0, "Pneumonia": 0, "Normal": 3}
    assert {row["mask_status"] for row in built.rows} == {"file"}


def test_dicom_exports_without_a_suffix_are_read_and_other_suffixless_files_skipped(tmp_path):
    stored = (film(9200).astype(np.uint16) * 16)
    tree = {**class_folders_tree(n=2), "Normal/IM00001": dicom(stored), "Normal/README": b"notes, not an image"}
    rows = by_name(index_of(write_folder(tree, tmp_path / "c")).rows)
    assert rows["Normal/IM00001"]["status"] == "ok" and rows["Normal/IM00001"]["format"] == "DICOM"
    assert rows["Normal/README"]["status"] == "not an image file"
