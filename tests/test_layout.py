"""The pipeline's declarations match the code: each stage's code dependencies are what its entry point
imports, its outputs are the paths the code writes, and every params key is read by some stage."""

from __future__ import annotations

import ast
import os
import shlex
import subprocess
from dataclasses import dataclass
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import LONGEST_FIRST, REPO, default_params

SRC = REPO / "src"
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
# No dependency of any stage: cxr/__init__.py holds only a docstring.
NOT_DEPENDENCIES = {"src/cxr/__init__.py"}


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
    # A stage is given its paths by its command (test_each_stage_is_given_every_path_it_declares); cxr.paths
    # reads dvc.yaml for the command-line tools.
    assert SRC / "cxr" / "paths.py" not in project_files(entry_point)
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


@dataclass(frozen=True)
class ResolvedStage:
    cmd: str
    outs: set[str]
    deps: set[str]
    params: list[str]  # the params keys it declares


def resolved_stages() -> dict[str, ResolvedStage]:
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        return {stage.addressing: ResolvedStage(
                    stage.cmd, {out.def_path for out in stage.outs},
                    {dep.def_path for dep in stage.deps if dep.def_path != "params.yaml"},
                    [key for dep in stage.deps if dep.def_path == "params.yaml" for key in dep.params])
                for stage in repo.index.stages}


# Options that name params entries; every other option of a stage's command is a path.
NAME_OPTIONS = {"--name", "--source", "--dataset", "--model", "--models-of", "--tested-on"}


def command_paths(cmd: str) -> set[Path]:
    words = shlex.split(cmd)
    return {Path(value) for option, value in zip(words, words[1:])
            if option.startswith("--") and option not in NAME_OPTIONS and not value.startswith("--")}


def params_strings(params: dict, keys: list[str]) -> set[Path]:
    """Every string value under the given params keys (a source's path, a generator's output folder)."""
    found, todo = set(), []
    for key in keys:
        node = params
        for part in key.split("."):
            node = node[part]
        todo.append(node)
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            todo += node.values()
        elif isinstance(node, list):
            todo += node
        elif isinstance(node, str):
            found.add(Path(node))
    return found


def within(path: Path, folders: set[Path]) -> bool:
    return bool({path, *path.parents} & folders)


def test_each_stage_is_given_every_path_it_declares():
    """dvc.yaml is the one place that names the pipeline's files: each stage's command passes the paths it reads
    and writes, and declares exactly those. An output the command does not name would be written where the code
    alone decides; a path it names but does not declare would be read untracked or written unseen by DVC."""
    params = default_params()
    for address, stage in resolved_stages().items():
        given = command_paths(stage.cmd)
        data_deps = {Path(dep) for dep in stage.deps if not dep.startswith(("stages/", "src/"))}
        outs = {Path(out) for out in stage.outs}
        from_params = params_strings(params, stage.params)  # a raw source, a generator's output folder
        assert {p for p in outs if not within(p, given) and p not in from_params} == set(), address
        assert {p for p in data_deps if not within(p, given) and p not in from_params} == set(), address
        # A folder given may be declared through the files in it (a split of a prepared dataset, a log's summary).
        assert {p for p in given if not any(within(q, {p}) for q in outs | data_deps)} == set(), address


def test_every_params_entry_has_its_stages():
    """What runs follows from params: a run per model and dataset (and per probe), a cross test per entry, an
    index per source, a view per dataset, the segmenter's exports and evaluations, each generator's output."""
    params = default_params()
    probe = params["probe"]
    expected = ({f"generate@{name}" for name in params["generate"]}
                | {f"generate_radiography@{name}" for name in params["generate_radiography"]}
                | {f"index@{name}" for name in params["source"]}
                | {f"prepare@{name}" for name in params["dataset"]}
                | {f"prepare_segmented@{name}" for name in params["segmented_dataset"]}
                | {f"segment_export@{name}" for name in params["segment"]["train_on"]}
                | {f"{step}@{name}" for step in ("segment_evaluate", "segment_explain")
                   for name in params["segment"]["evaluate_on"]}
                | {"segment_train", "report"})
    for prefix, grid in (("", params), ("probe_", probe)):
        expected |= {f"{prefix}{step}@{model}-{dataset}" for step in ("train", "explain")
                     for model in grid["models"] for dataset in grid["datasets"]}
        expected |= {f"{prefix}evaluate@{dataset}" for dataset in grid["datasets"]}
        expected |= {f"{prefix}crosstest@test{index}" for index in range(len(grid["cross_tests"]))}
    assert set(resolved_stages()) == expected


def test_no_dependency_shares_its_name_with_a_params_key():
    """`dvc exp show` keys params and dependencies in one set of columns: a folder named as a params key (`models`)
    overwrites that column with its hash, and `--keep`/`--sort-by` on such a table fails with a KeyError."""
    names = set(default_params())
    for address, stage in resolved_stages().items():
        assert not names & stage.deps, address


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
    stages = resolved_stages()
    expected = {f"{model.replace('_', '-')}-{dataset}": stages[f"train@{model}-{dataset}"]
                for model in params["models"] for dataset in params["datasets"]}
    expected["lung-segmenter"] = stages["segment_train"]
    assert {name: Path(entry["path"]) for name, entry in artifacts.items()} == \
        {name: next(Path(out) for out in stage.outs if out.endswith(".pt")) for name, stage in expected.items()}
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
