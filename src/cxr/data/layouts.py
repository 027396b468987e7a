"""The folder layouts of the public chest X-ray collections, recognised from a file list.

Each layout turns the files of a raw source (folder or zip, see cxr.io.sources) into entries: an
image, its raw class, its lung mask if any, the source's own split if it has one, and what the file
name or metadata says about it. Raw class names map to our classes through DEFAULT_CLASS_MAP,
which `source.<name>.class_map` overrides; a raw class mapped to null, or not mapped, is dropped
and counted.

| layout | expected files | masks | own split |
|---|---|---|---|
| radiography | `<class>/images/*`, `<class>/masks/*`, `<class>.metadata.xlsx` (Kaggle COVID-19 Radiography Database) | files (256 px for 299 px images) | no |
| covid-qu-ex | `.../{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/{images,lung masks}/*` | files | yes |
| kermany | `chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/*` | none | yes |
| study | `CXR Images`, `CXR Images Normal`, `CXR Images Pneumonia` (flat) | none | no |
| study-segmented | `{COVID-19,Normal,Pneumonia}/*`, already lung-segmented | the non-black region | no |
| class-folders | `<class>/*` or `<class>/images/*`, optional `<class>/masks/*` | files if present | no |

Any layout may sit inside one wrapper folder (as most zips have it).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from cxr.io.images import IMAGE_SUFFIXES, decode_image
from cxr.io.pixels import UnreadableImage
from cxr.io.sources import RawSource

LAYOUTS = ("radiography", "covid-qu-ex", "kermany", "study", "study-segmented", "class-folders")

# Raw class (folder) name -> our class, or None: dropped and counted. Case is ignored.
DEFAULT_CLASS_MAP: dict[str, str | None] = {
    "covid": "COVID-19",
    "covid-19": "COVID-19",
    "covid19": "COVID-19",
    "cxr images": "COVID-19",  # the original study's COVID-19 folder
    "pneumonia": "Pneumonia",
    "viral pneumonia": "Pneumonia",
    "non-covid": "Pneumonia",  # COVID-QU-Ex: viral or bacterial pneumonia
    "cxr images pneumonia": "Pneumonia",
    "normal": "Normal",
    "cxr images normal": "Normal",
    "lung_opacity": None,  # Radiography Database: non-COVID lung infections, no diagnosis of ours
}

# A patient id in the file name, where the collection has one (group 1).
DEFAULT_PATIENT_PATTERNS: dict[str, str | None] = {
    "kermany": r"^(person\d+)_",
    "study": r"^(person\d+)_",
}


@dataclass(frozen=True)
class Entry:
    name: str  # the image's relative path in the source
    raw_class: str
    mask: str | None = None  # the lung mask file's relative path
    mask_from_image: bool = False  # already lung-segmented: the lungs are the non-black region
    own_split: str | None = None  # train / val / test, where the source comes split
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # e.g. subtype, source URL


@dataclass
class Listing:
    layout: str
    root: str  # the wrapper folder the layout sits in ("" for none)
    entries: list[Entry]
    ignored: Counter  # files that are no image of the layout, by reason


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _stem_index(files: list[str], folder: str) -> dict[str, str]:
    """stem -> file of one mask folder (first by name), for matching masks saved in another format."""
    index: dict[str, str] = {}
    prefix = folder.rstrip("/") + "/"
    for name in files:
        if name.startswith(prefix) and "/" not in name[len(prefix):]:
            index.setdefault(PurePosixPath(name).stem.lower(), name)
    return index


def _match(files: list[str], pattern: str) -> list[re.Match]:
    compiled = re.compile(pattern)
    return [m for name in files if (m := compiled.match(name))]


def _roots(matches: list[re.Match]) -> list[str]:
    """Wrapper folders the layout was found in, shallowest first (Kermany's zip holds a second copy deeper)."""
    return sorted({m.group("root") for m in matches}, key=lambda root: (root.count("/"), root))


def _with_masks(matches: list[re.Match], files: list[str], mask_folder: Callable[[re.Match], str],
                split: Callable[[re.Match], str | None] = lambda m: None) -> list[Entry]:
    entries, indexes = [], {}
    for m in matches:
        folder = mask_folder(m)
        if folder not in indexes:
            indexes[folder] = _stem_index(files, folder)
        name = m.group(0)
        mask = indexes[folder].get(PurePosixPath(name).stem.lower())
        entries.append(Entry(name, m.group("cls"), mask=mask, own_split=split(m)))
    return entries


def _radiography(files: list[str], source: RawSource) -> Listing | None:
    classes = "COVID|Normal|Viral Pneumonia|Lung_Opacity"
    matches = _match(files, rf"^(?P<root>(?:.*/)?)(?P<cls>{classes})/images/(?P<file>[^/]+)$")
    if len({m.group("cls") for m in matches}) < 2:
        return None
    root = _roots(matches)[0]
    matches = [m for m in matches if m.group("root") == root]
    entries = _with_masks(matches, files, lambda m: f"{m.group('root')}{m.group('cls')}/masks")
    sources = _radiography_metadata(files, source, root)
    if sources:
        entries = [Entry(e.name, e.raw_class, e.mask, extra={"source": sources.get(PurePosixPath(e.name).stem.lower(), "")})
                   for e in entries]
    return Listing("radiography", root, entries, Counter())


def _radiography_metadata(files: list[str], source: RawSource, root: str) -> dict[str, str]:
    """file stem -> the URL of the collection it came from, from `<class>.metadata.xlsx` (or .csv) sheets."""
    import csv
    import io

    urls: dict[str, str] = {}
    for name in files:
        if not (name.startswith(root) and "/" not in name[len(root):] and ".metadata." in name.lower()):
            continue
        try:
            if name.lower().endswith(".xlsx"):
                from openpyxl import load_workbook

                sheet = load_workbook(io.BytesIO(source.read(name)), read_only=True).active
                rows = [[str(cell) if cell is not None else "" for cell in row] for row in sheet.iter_rows(values_only=True)]
            elif name.lower().endswith(".csv"):
                rows = list(csv.reader(io.StringIO(source.read(name).decode("utf-8-sig"))))
            else:
                continue
        except Exception as err:  # noqa: BLE001 - a bad spreadsheet loses a column, not the dataset
            print(f"warning: cannot read metadata {name} ({type(err).__name__}: {err}); its images get no source column")
            continue
        if not rows:
            continue
        header = [cell.strip().upper() for cell in rows[0]]
        if "FILE NAME" not in header or "URL" not in header:
            continue
        file_col, url_col = header.index("FILE NAME"), header.index("URL")
        for row in rows[1:]:
            if len(row) > max(file_col, url_col) and row[file_col]:
                urls[PurePosixPath(row[file_col].strip()).stem.lower()] = row[url_col].strip()
    return urls


def _covid_qu_ex(files: list[str], source: RawSource) -> Listing | None:
    pattern = r"^(?P<root>(?:.*/)?)(?P<split>Train|Val|Test)/(?P<cls>COVID-19|Non-COVID|Normal)/images/(?P<file>[^/]+)$"
    matches = _match(files, pattern)
    if not matches:
        return None
    # The Infection Segmentation Data subset repeats images of the Lung Segmentation Data.
    lung = [m for m in matches if "Lung Segmentation Data" in m.group("root")]
    chosen = lung or matches
    root = _roots(chosen)[0]
    chosen = [m for m in chosen if m.group("root") == root]
    entries = _with_masks(chosen, files, lambda m: f"{m.group('root')}{m.group('split')}/{m.group('cls')}/lung masks",
                          split=lambda m: m.group("split").lower())
    return Listing("covid-qu-ex", root, entries, Counter())


def _kermany(files: list[str], source: RawSource) -> Listing | None:
    matches = _match(files, r"^(?P<root>(?:.*/)?)(?P<split>train|test|val)/(?P<cls>NORMAL|PNEUMONIA)/(?P<file>[^/]+)$")
    if not matches:
        return None
    root = _roots(matches)[0]
    entries = []
    for m in matches:
        if m.group("root") != root:
            continue
        file = m.group("file").lower()
        subtype = "bacterial" if "bacteria" in file else "viral" if "virus" in file else ""
        entries.append(Entry(m.group(0), m.group("cls"), own_split=m.group("split"), extra={"subtype": subtype}))
    return Listing("kermany", root, entries, Counter())


def _study(files: list[str], source: RawSource) -> Listing | None:
    matches = _match(files, r"^(?P<root>(?:.*/)?)(?P<cls>CXR Images(?: Normal| Pneumonia)?)/(?P<file>[^/]+)$")
    if not matches:
        return None
    root = _roots(matches)[0]
    return Listing("study", root, [Entry(m.group(0), m.group("cls")) for m in matches if m.group("root") == root], Counter())


def _class_root(files: list[str]) -> str:
    """The folder holding the class folders: the source itself, or the single folder that wraps everything."""
    root = ""
    while True:
        rest = [name[len(root):] for name in files]
        tops = {name.split("/", 1)[0] for name in rest if "/" in name}
        if len(tops) == 1 and all("/" in name for name in rest):
            candidate = f"{root}{tops.pop()}/"
            deeper = {name[len(candidate):].split("/", 1)[0] for name in files if name[len(candidate):].count("/") >= 1}
            # A lone class folder with images/ and masks/ inside is the class, not a wrapper.
            if deeper and not deeper & {"images", "masks"}:
                root = candidate
                continue
        return root


def _class_folders(files: list[str], source: RawSource) -> Listing | None:
    root = _class_root(files)
    matches = _match(files, rf"^(?P<root>{re.escape(root)})(?P<cls>[^/]+)/(?:images/)?(?P<file>[^/]+)$")
    matches = [m for m in matches if m.group("cls").lower() != "masks"]
    if not matches:
        return None
    entries = _with_masks(matches, files, lambda m: f"{m.group('root')}{m.group('cls')}/masks")
    listing = Listing("class-folders", root, entries, Counter())
    if not any(e.mask for e in entries) and _looks_segmented(listing, source):
        listing = Listing("study-segmented", root, [Entry(e.name, e.raw_class, mask_from_image=True) for e in entries],
                          Counter())
    return listing


def _looks_segmented(listing: Listing, source: RawSource, per_class: int = 3) -> bool:
    """Already lung-segmented sets are black around the lungs: look at a few images of each class."""
    by_class: dict[str, list[Entry]] = {}
    for entry in listing.entries:
        if is_image_name(entry.name):
            by_class.setdefault(entry.raw_class, []).append(entry)
    verdicts = []
    for entries in by_class.values():
        for entry in entries[:per_class]:
            try:
                pixels = decode_image(source.read(entry.name), entry.name, 50_000_000).pixels
            except (UnreadableImage, OSError):
                continue
            border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
            verdicts.append(bool((border <= 8).mean() > 0.98 and (pixels <= 8).mean() > 0.3))
    return bool(verdicts) and all(verdicts)


DETECTORS: dict[str, Callable[[list[str], RawSource], Listing | None]] = {
    "radiography": _radiography,
    "covid-qu-ex": _covid_qu_ex,
    "kermany": _kermany,
    "study": _study,
    "class-folders": _class_folders,
}


def list_source(source: RawSource, layout: str = "auto") -> Listing:
    """The source's images in the given layout, or in the first layout that fits (most specific first).

    Files without a suffix are listed too where a layout takes any file (DICOM exports often have none).
    """
    files = source.files()
    if not files:
        raise ValueError(f"{source.path} holds no files")
    if layout == "auto":
        for detector in DETECTORS.values():
            listing = detector(files, source)
            if listing is not None:
                break
        else:
            raise ValueError(f"{source.path}: no known layout fits (expected one of {', '.join(LAYOUTS)}; see README)")
    elif layout == "study-segmented":
        listing = _class_folders(files, source) or Listing(layout, "", [], Counter())
        listing = Listing(layout, listing.root, [Entry(e.name, e.raw_class, mask_from_image=True, extra=e.extra)
                                                 for e in listing.entries], Counter())
    else:
        listing = DETECTORS[layout](files, source)
        if listing is None or not listing.entries:
            raise ValueError(f"{source.path} does not have the {layout} layout; set the source's layout to auto "
                             f"or see the expected layouts in README")
    used = {e.name for e in listing.entries} | {e.mask for e in listing.entries if e.mask}
    for name in files:
        if name not in used:
            listing.ignored["not an image (metadata, documents)" if not is_image_name(name)
                            else "lung mask without image" if "mask" in name.lower()
                            else "image outside the layout"] += 1
    return listing


def map_class(raw_class: str, overrides: dict[str, str | None], classes: list[str]) -> str | None:
    """Our class for a raw class: the source's class_map first (exact name), then the default table."""
    if raw_class in overrides:
        return overrides[raw_class]
    target = DEFAULT_CLASS_MAP.get(raw_class.lower())
    if target is None:
        target = next((c for c in classes if c.lower() == raw_class.lower()), None)
    return target if target in classes else None
