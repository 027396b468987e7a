"""The data report in words, and what several sources share: read by the index stage and `cxr inspect`."""

from __future__ import annotations

from cxr.data.audit import CORNER_PATCHES, OUTSIDE_LUNGS, WHOLE_FILM, baseline_line
from cxr.data.index import Index, hashes_of, near_duplicate_pairs

SHOWN = 10  # list entries printed before "... and N more"


def summary_lines(report: dict) -> list[str]:
    """A data report as a person reads it, counts as plain `name count` pairs; `--json` gives all of it."""
    lines = [f"{report['source']}: {report['path']} ({report['kind']}, layout {report['layout']}"
             + (f" under {report['root']}" if report["root"] else "") + ")"]
    mapping = ", ".join(f"{raw} -> {label or 'dropped'}" for raw, label in report["class_map"].items())
    lines.append(f"  classes: {mapping}")
    dropped = report["images_dropped_by_class"]
    lines.append(f"  images: {report['images_kept']} kept, {report['images_skipped']} skipped"
                 + (f", {sum(dropped.values())} dropped with their class ({counted(dropped)})" if dropped else "")
                 + (f"; other files: {counted(report['files_ignored'])}" if report["files_ignored"] else ""))
    for split, counts in report["counts"].items():
        lines.append(f"  {split:>5}: " + ", ".join(f"{label} {count}" for label, count in counts.items()))
    missing = [label for label in report["sizes"] if not report["sizes"][label]]
    if missing:
        lines.append(f"  no usable images of {', '.join(missing)}: no model can train on this source; it can serve as an "
                     f"external test set (cross_tests)")
    for title, key in (("formats", "formats"), ("native sizes", "native_sizes"), ("borders", "borders"),
                       ("lung masks", "lung_masks"), ("source collections", "sources"), ("subtypes", "subtypes")):
        if key in report:
            lines.append(f"  {title}: " + "; ".join(f"{label}: {counted(values) or 'none'}"
                                                    for label, values in report[key].items()))
    for label, size in report["sizes"].items():
        if size:
            lines.append(f"  sizes {label}: width {size['width_min']}-{size['width_max']} (median {size['width_median']:g}), "
                         f"height {size['height_min']}-{size['height_max']} (median {size['height_median']:g})")
    coverage = ", ".join(f"{label} {share:.0%}" for label, share in report["lung_mask_coverage"].items() if share is not None)
    lines.append(f"  lung-mask coverage: {coverage or 'none'}")
    lines += statistics_lines(report.get("image_statistics", {}))
    if report["skipped"]:
        lines.append(f"  skipped by reason: {counted(report['skipped_by_reason'])}")
        lines += [f"    {entry['file']}: {entry['reason']}" + (f" ({entry['detail']})" if entry["detail"] else "")
                  for entry in report["skipped"][:SHOWN]]
        lines += _more(report["skipped"])
    lines.append(f"  duplicate groups: {len(report['duplicate_groups'])} ({len(report['exact_duplicate_groups'])} of "
                 f"identical pixels, {len(report['cross_class_duplicate_groups'])} across classes; each kept in one split); "
                 f"patients {report['patients']} ({report['patients_with_several_images']} with several images); "
                 f"largest group {report['largest_split_group']}")
    lines += [f"    across classes: {', '.join(group)}" for group in report["cross_class_duplicate_groups"][:SHOWN]]
    if report["groups_crossing_own_split"]:
        lines.append(f"  WARNING: {len(report['groups_crossing_own_split'])} duplicate or patient groups cross the "
                     f"source's own split (leakage if own_split is used): "
                     + "; ".join(", ".join(group) for group in report["groups_crossing_own_split"][:3]))
    if "metadata_baseline" in report:
        lines.append(f"  {baseline_line(report['metadata_baseline'])}")
    lines += [f"  SHORTCUT? {flag}" for flag in report["shortcut_flags"]]
    return lines


def counted(values: dict) -> str:
    """{'PNG L 8-bit': 5, 'JPEG L 8-bit': 1} -> 'PNG L 8-bit 5, JPEG L 8-bit 1'."""
    return ", ".join(f"{value} {count}" for value, count in values.items())


def statistics_lines(statistics: dict) -> list[str]:
    """Per region, each class's median film: what the shortcut flags on statistics compare."""
    lines = []
    for region in (OUTSIDE_LUNGS, WHOLE_FILM):
        described = []
        for label, regions in statistics.items():
            median = regions.get(region)
            if median is None:
                continue
            quantiles = "/".join(_level(median[f"intensity_p{q}"]) for q in ("05", "50", "95"))
            corners = " and ".join("/".join(_level(median[f"corner_{corner}_{stat}"]) for corner in CORNER_PATCHES)
                                   for stat in ("mean", "p95"))
            described.append(f"{label} ({median['images']}) mean {_level(median['intensity_mean'])}, "
                             f"contrast {_level(median['intensity_std'])}, 5/50/95% {quantiles}, "
                             f"black border {_share(median['black_border'])}, corners {corners}")
        if described:
            lines.append(f"  statistics {region} (median film; corners top-left/top-right/bottom-left/bottom-right, "
                         f"mean and 95% quantile): "
                         + "; ".join(described))
    return lines


def _level(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _more(entries: list) -> list[str]:
    return [f"    ... and {len(entries) - SHOWN} more (all in the JSON report)"] if len(entries) > SHOWN else []


def shared_images(indexes: list[Index], max_distance: int) -> list[dict]:
    """Exact and near-duplicate images found in more than one source (public COVID collections share many)."""
    kept = [[row for row in index.rows if row["status"] == "ok"] for index in indexes]
    found = []
    for i in range(len(indexes)):
        for j in range(i + 1, len(indexes)):
            if not kept[i] or not kept[j]:
                continue
            rows, cols = near_duplicate_pairs(hashes_of(kept[i]), max_distance, hashes_of(kept[j]))
            sha_j: dict[str, list[int]] = {}
            for index, row in enumerate(kept[j]):
                sha_j.setdefault(row["pixel_sha1"], []).append(index)
            exact = [(a, b) for a, row in enumerate(kept[i]) for b in sha_j.get(row["pixel_sha1"], [])]
            pairs = sorted(set(zip(rows.tolist(), cols.tolist())) | set(exact))
            exact_set = set(exact)
            found += [{"a": f"{indexes[i].report['source']}:{kept[i][a]['name']}", "a_class": kept[i][a]["label"],
                       "b": f"{indexes[j].report['source']}:{kept[j][b]['name']}", "b_class": kept[j][b]["label"],
                       "exact": (a, b) in exact_set} for a, b in pairs]
    return found


def shared_lines(shared: list[dict]) -> list[str]:
    if not shared:
        return ["across sources: no shared images"]
    differ = [pair for pair in shared if pair["a_class"] != pair["b_class"]]
    lines = [f"across sources: {len(shared)} shared image pairs ({sum(p['exact'] for p in shared)} exact), "
             f"{len(differ)} with different classes"]
    lines += [f"    {p['a']} ({p['a_class']}) ~ {p['b']} ({p['b_class']})" + (" exact" if p["exact"] else "")
              for p in (differ + [p for p in shared if p not in differ])[:SHOWN]]
    return lines + _more(shared)


