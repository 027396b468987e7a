"""The pipeline's declarations match the code: each stage's code dependencies are what its entry point
imports, its outputs are the paths the code writes, and every params key is read by some stage."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cxr import paths
from tests.conftest import LONGEST_FIRST, REPO, default_params

SRC = REPO / "src"
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
# Not dependencies of any stage: cxr/__init__.py holds only a docstring, and the paths in cxr/paths.py are
# declared in dvc.yaml itself (test_declared_outputs_are_the_paths_the_code_writes keeps the two equal).
NOT_DEPENDENCIES = {"src/cxr/__init__.py", "src/cxr/paths.py"}


def imported_modules(path: Path) -> set[str]:
    """Every `cxr` module a file imports, at module level or inside functions (lazy imports are imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "cxr"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cxr":
            found.add(node.module)
            # `from cxr.data import prepare` imports the module cxr.data.prepare.
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if module_file(f"{node.module}.{alias.name}") is not None}
    return found


def module_file(module: str) -> Path | None:
    base = SRC / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def project_files(entry_point: Path) -> set[Path]:
    """The entry point and every project file it imports, transitively (parent packages included)."""
    seen: set[Path] = set()
    todo = [entry_point]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            parts = module.split(".")
            for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                found = module_file(".".join(parts[:depth]))
                if found is not None:
                    todo.append(found)
    return seen


# Sub-packages whose modules serve unrelated stages are declared module by module: a fix to the DICOM reader
# re-runs the stages that read raw images, not every classifier; a figure colour, not the segmenter's inference.
MODULE_LEVEL = {"io", "explain"}


def dependency_of(path: Path) -> str | None:
    """A file's dependency entry: its sub-package folder under src/cxr, the module itself in the packages of
    MODULE_LEVEL (whose __init__.py holds no code, so it is none), or the file itself."""
    relative = path.relative_to(REPO)
    if relative.parts[:2] == ("src", "cxr") and len(relative.parts) > 3:
        if relative.parts[2] not in MODULE_LEVEL:
            return "/".join(relative.parts[:3])
        if relative.name == "__init__.py":
            return None
    return relative.as_posix()


def stage_definitions():
    for name, stage in DVC_YAML["stages"].items():
        yield name, stage.get("do", stage)


# Stages that run another stage's entry point with other arguments.
ENTRY_POINTS = {"generate_radiography": "generate", "crosstest": "evaluate", "probe_train": "train",
                "probe_evaluate": "evaluate", "probe_crosstest": "evaluate", "probe_explain": "explain"}


@pytest.mark.parametrize("name, stage", list(stage_definitions()), ids=[name for name, _ in stage_definitions()])
def test_declared_code_dependencies_are_what_the_entry_point_imports(name, stage):
    script = ENTRY_POINTS.get(name, name)
    entry_point = REPO / "stages" / f"{script}.py"
    assert f"python stages/{script}.py" in stage["cmd"]
    imported = {dependency_of(path) for path in project_files(entry_point)} - NOT_DEPENDENCIES - {None}
    declared = {dep for dep in stage["deps"] if dep.startswith(("stages/", "src/"))}
    assert declared == imported, (f"stage {name}: declare {sorted(imported - declared)}, "
                                  f"remove {sorted(declared - imported)}")


# The library's packages from the bottom up: a package imports only from lower layers (or its own).
LAYERS = [{"io", "params", "paths", "anatomy"}, {"figures", "metrics"}, {"data", "models", "synthetic"},
          {"training", "explain"}, {"segment"}, {"predict", "report"}, {"cli"}]


def library_imports() -> dict[str, set[str]]:
    """Each cxr module (dotted name) and the cxr modules it imports, lazily or not."""
    graph = {}
    for path in SRC.rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {module for module in imported_modules(path) if module_file(module) is not None}
    return graph


def test_library_imports_run_down_the_layers_without_a_circle():
    graph = library_imports()
    layer = {package: depth for depth, packages in enumerate(LAYERS) for package in packages}
    top = {name: name.split(".")[1] if "." in name else "" for name in graph}
    assert set(top.values()) - {""} == set(layer), "every package of src/cxr has its layer in LAYERS"
    upward = sorted(f"{a} -> {b}" for a, imported in graph.items() for b in imported
                    if top[a] and top[b] and top[a] != top[b] and layer[top[b]] >= layer[top[a]])
    assert upward == []
    # A circle: a module that reaches itself through what it imports.
    circles = []
    for start in graph:
        todo, seen = list(graph[start]), set()
        while todo:
            module = todo.pop()
            if module == start:
                circles.append(start)
                break
            if module not in seen:
                seen.add(module)
                todo += graph.get(module, ())
    assert circles == []


def package_of(path: Path) -> str:
    relative = path.relative_to(REPO)
    return relative.parts[2] if relative.parts[:2] == ("src", "cxr") and len(relative.parts) > 3 else relative.parts[0]


def private_imports(path: Path) -> list[str]:
    """`_name`s the file imports from another package of cxr (a stage is a package of its own)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "cxr":
            source = module_file(node.module)
            if source is not None and package_of(source) != package_of(path):
                found += [f"{node.module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_private_name_is_imported_across_packages():
    """A helper two packages share has a public home: a `_name` is its module's own, free to change."""
    borrowed = {path.relative_to(REPO).as_posix(): names
                for path in sorted([*SRC.rglob("*.py"), *(REPO / "stages").glob("*.py")])
                if (names := private_imports(path))}
    assert borrowed == {}


@pytest.mark.parametrize("package", ["", *sorted(MODULE_LEVEL)])
def test_package_roots_that_are_no_dependency_hold_no_code(package):
    """cxr/__init__.py and the __init__.py of the packages declared module by module are in no stage's
    dependencies, so they must stay a docstring."""
    tree = ast.parse((SRC / "cxr" / package / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)


def test_each_stage_reads_top_to_bottom_in_one_screen():
    """A stage is its arguments, its params slice, library calls and outputs: its main stays about 40 lines
    (at most 50); the work is in the library."""
    lengths = {path.name: node.end_lineno - node.lineno + 1 for path in sorted((REPO / "stages").glob("*.py"))
               for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef) and node.name == "main"}
    assert len(lengths) == len(list((REPO / "stages").glob("*.py")))
    assert {name: length for name, length in lengths.items() if length > 50} == {}


def test_each_stage_freezes_its_imports_before_its_work():
    """A stage's process hands its imported libraries to gc.freeze before main (cxr.params.freeze_imports): its
    collections and its shutdown then skip them."""
    for path in sorted((REPO / "stages").glob("*.py")):
        entry = ast.parse(path.read_text()).body[-1]
        assert isinstance(entry, ast.If) and ast.unparse(entry.test) == "__name__ == '__main__'", path.name
        assert [ast.unparse(line) for line in entry.body] == ["freeze_imports()", "main()"], path.name


def test_freezing_imports_leaves_later_garbage_collectable():
    """What exists when a stage freezes is out of the collector's sight; what the stage makes after is not."""
    script = ("import gc, weakref\nfrom cxr.params import freeze_imports\n"
              "freeze_imports(); frozen = gc.get_freeze_count()\n"
              "class Node: pass\n"
              "a, b = Node(), Node(); a.other, b.other = b, a; alive = weakref.ref(a); del a, b; gc.collect()\n"
              "print(frozen, alive() is None)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(SRC)})
    frozen, collected = result.stdout.split()
    assert int(frozen) > 10_000 and collected == "True", result.stdout


def test_stages_folder_holds_only_entry_points():
    assert sorted(p.name for p in (REPO / "stages").iterdir() if p.name != "__pycache__") == \
        sorted({f"{ENTRY_POINTS.get(name, name)}.py" for name in DVC_YAML["stages"]})


def resolved_stages():
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {stage.addressing: ({out.def_path for out in stage.outs}, {dep.def_path for dep in stage.deps})
                for stage in repo.index.stages}


def expected_paths(address: str, params: dict) -> tuple[set[Path], set[Path]]:
    """(outputs, data inputs) of one resolved stage, as the code names them."""
    name, _, item = address.partition("@")
    if name == "generate":
        return {Path(params["generate"][item]["out_dir"]), Path(params["generate"][item]["shortcut_dir"])}, set()
    if name == "generate_radiography":
        return {Path(params["generate_radiography"][item]["out_zip"])}, set()
    if name == "index":
        return ({paths.index_dir(item), paths.source_report_file(item), paths.source_audit_file(item)},
                {Path(params["source"][item]["path"])})
    if name == "prepare":
        return {paths.prepared_dir(item), paths.view_report_file(item)}, {paths.index_dir(params["dataset"][item]["source"])}
    if name == "prepare_segmented":
        return ({paths.prepared_dir(item), paths.view_report_file(item)},
                {paths.index_dir(params["segmented_dataset"][item]["source"]), paths.SEGMENTER_FILE})
    if name == "segment_export":
        return {paths.segment_export_dir(item)}, {paths.prepared_dir(item)}
    if name == "segment_train":
        return {paths.SEGMENTER_FILE, paths.SEGMENT_TRAIN_SUMMARY, paths.SEGMENT_TRAIN_CURVES}, {paths.SEGMENT_EXPORTS}
    if name == "segment_evaluate":
        return ({paths.segment_metrics_file(item), paths.segment_predictions_file(item)},
                {paths.SEGMENTER_FILE, paths.split_dir(item, "test"), paths.view_file(item)})
    if name == "segment_explain":
        return ({paths.segment_interpretation_file(item), paths.segment_gallery_file(item), paths.segment_zones_file(item)},
                {paths.SEGMENTER_FILE, paths.split_dir(item, "test"), paths.segment_metrics_file(item),
                 paths.segment_predictions_file(item)})
    if name == "report":
        return ({paths.SUMMARY_FILE, paths.HEADLINE_FILE, paths.COMPARISON_FIGURE, paths.EXPLANATIONS_FIGURE, paths.ZONES_FIGURE,
                 paths.INDEX_FILE, paths.CARDS_DIR},
                {paths.metrics_file("x", "y").parent.parent, paths.metrics_file("x", "y", "z").parent.parent,
                 paths.explain_metrics_file("x", "y").parent.parent, paths.explain_dir("x", "y").parent.parent,
                 paths.segment_metrics_file("x").parent.parent, paths.view_report_file("x").parent,
                 paths.source_audit_file("x").parent, paths.source_report_file("x").parent,
                 paths.evaluation_dir("x", "y").parent.parent, paths.evaluation_dir("x", "y", "z").parent.parent,
                 paths.train_log_dir("x", "y").parent.parent, paths.segment_report_dir("x").parent})
    # A probe stage is its grid stage over the probe's lists.
    grid = params["probe"] if name.startswith("probe_") else params
    name = name.removeprefix("probe_")
    if name in ("evaluate", "crosstest"):
        # Every model of the grid in one stage: the folders that hold each model's files, and the figures' data
        # of all of them.
        if name == "crosstest":
            test = next(t for i, t in enumerate(grid["cross_tests"]) if item == f"test{i}")
            dataset, tested_on = test["trained_on"], test["tested_on"]
        else:
            dataset = tested_on = next(d for d in grid["datasets"] if item == d)
        owned = {(paths.metrics_file(dataset, model, tested_on).parent, paths.evaluation_dir(dataset, model, tested_on).parent,
                  paths.model_file(dataset, model).parent) for model in grid["models"]}
        assert len(owned) == 1, owned
        metrics_dir, evaluation_dir, models_dir = owned.pop()
        plots = paths.evaluation_plots_dir(dataset, tested_on)
        return ({metrics_dir, evaluation_dir, plots / "roc.json", plots / "confusion.json"},
                {models_dir, paths.split_dir(tested_on, "test"), paths.view_file(tested_on)})
    model, dataset = next((m, d) for m in grid["models"] for d in grid["datasets"] if item == f"{m}-{d}")
    if name == "train":
        return ({paths.model_file(dataset, model), paths.train_summary_file(dataset, model),
                 paths.train_curves_dir(dataset, model)},
                {paths.split_dir(dataset, "train"), paths.split_dir(dataset, "val"), paths.view_file(dataset)})
    if name == "explain":
        return ({paths.explain_metrics_file(dataset, model), paths.explain_dir(dataset, model)},
                {paths.model_file(dataset, model), paths.split_dir(dataset, "test"), paths.view_file(dataset),
                 paths.predictions_file(dataset, model)})
    raise AssertionError(f"no expected paths for stage {address}")


def test_declared_outputs_are_the_paths_the_code_writes():
    params = default_params()
    stages = resolved_stages()
    # Every entry params names has its stage: a run per model and dataset (and per probe), a cross test per model
    # and entry, an index per source, a view per dataset, the segmenter's evaluations, each generator's output.
    declared = {Path(out) for outs, _ in stages.values() for out in outs}
    probe = params["probe"]
    wanted = ({paths.model_file(d, m) for grid in (params, probe) for m in grid["models"] for d in grid["datasets"]}
              | {paths.metrics_file(t["trained_on"], m, t["tested_on"]) for grid in (params, probe)
                 for m in grid["models"] for t in grid["cross_tests"]}
              | {paths.index_dir(name) for name in params["source"]}
              | {paths.prepared_dir(name) for name in [*params["dataset"], *params["segmented_dataset"]]}
              | {paths.segment_export_dir(name) for name in params["segment"]["train_on"]}
              | {paths.segment_gallery_file(name) for name in params["segment"]["evaluate_on"]}
              | {Path(entry["out_dir"]) for entry in params["generate"].values()}
              | {Path(entry["out_zip"]) for entry in params["generate_radiography"].values()}
              | {paths.SEGMENTER_FILE, paths.INDEX_FILE})
    assert {path for path in wanted if not ({path, *path.parents} & declared)} == set()  # a file, or in a folder out
    for address, (outs, deps) in stages.items():
        expected_outs, expected_inputs = expected_paths(address, params)
        assert {Path(p) for p in outs} == expected_outs, address
        data_deps = {Path(p) for p in deps if not p.startswith(("stages/", "src/")) and p != "params.yaml"}
        assert data_deps == expected_inputs, address


def test_no_dependency_shares_its_name_with_a_params_key():
    """`dvc exp show` keys params and dependencies in one set of columns: a folder named as a params key (`models`)
    overwrites that column with its hash, and `--keep`/`--sort-by` on such a table fails with a KeyError."""
    names = set(default_params())
    for address, (_, deps) in resolved_stages().items():
        assert not names & set(deps), address


def test_every_params_key_is_read_by_some_stage():
    """A key no stage declares would change nothing when edited: a silent no-op for the user."""
    params = default_params()
    declared = set()
    for _, stage in stage_definitions():
        declared |= {key.split(".")[0] for key in stage.get("params", [])}
    assert declared == set(params)


def test_the_registry_names_every_trained_model():
    """dvc.yaml's artifacts list each models x datasets checkpoint and the segmenter, at the paths the stages write."""
    params = default_params()
    artifacts = DVC_YAML["artifacts"]
    expected = {f"{model.replace('_', '-')}-{dataset}": paths.model_file(dataset, model)
                for model in params["models"] for dataset in params["datasets"]}
    expected["lung-segmenter"] = paths.SEGMENTER_FILE
    assert {name: Path(entry["path"]) for name, entry in artifacts.items()} == expected
    assert all(entry["type"] == "model" and entry["desc"] and entry["labels"] for entry in artifacts.values())


def test_the_longest_first_test_order_names_existing_files():
    """conftest.py's LONGEST_FIRST orders the suite for the workers; a renamed file would silently drop to the end."""
    assert [name for name in LONGEST_FIRST if not (REPO / "tests" / name).is_file()] == []


def third_party_imports(paths: list[Path]) -> set[str]:
    """Top-level names of the non-standard, non-cxr modules the files import, lazily or not."""
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"cxr", "__future__"}


def test_every_package_the_library_imports_is_declared():
    """A package imported only because another dependency happens to bring it breaks when that one drops it."""
    import re
    import tomllib
    from importlib.metadata import packages_distributions

    def normal(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {normal(re.split(r"[<>=!~;\[ ]", requirement)[0]) for requirement in project["dependencies"]}
    distributions = packages_distributions()
    imported = third_party_imports([*SRC.rglob("*.py"), *(REPO / "stages").glob("*.py")])
    undeclared = {module: distributions.get(module) for module in imported
                  if not {normal(d) for d in distributions.get(module, [module])} & declared}
    assert undeclared == {}
