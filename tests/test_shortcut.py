"""The shortcut experiment of the README, end to end at test scale: `dvc exp run` with the datasets switched
to the generator's twin set, whose films carry a class marker outside the lungs.

Full-image models learn the marker: their maps leave the lungs and they fail on marker-free films of the
second hospital. Lungs models cannot see it: their data is the same, so DVC does not even re-run them.
The probes say so before any experiment: a model on the outside view (lungs blacked out) and the metadata-only
baseline are near chance on the clean films and near 1.0 on the marked twin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import baseline_repo, dvc_in, tiny_params

pytestmark = pytest.mark.pipeline

# The README's command, word for word.
EXPERIMENT = ["-S", "dataset.full.source=synthetic_shortcut", "-S", "dataset.lungs.source=synthetic_shortcut"]


def shortcut_params() -> dict:
    """One model, enough films and epochs to learn something in a minute or two: the direction, not the default's
    size. The second hospital without its tone curve: at this scale the only thing it should test is the marker."""
    params = tiny_params()
    params["models"] = ["resnet18"]
    params["model"] = {"resnet18": {**params["model"]["resnet18"], "image_size": 64}}
    params["generate"]["synthetic"].update(images_per_class=100, image_size=96)
    params["generate_radiography"]["synthetic_hospital2"].update(images_per_class=60, image_size=96, mask_size=80, gamma=1.0)
    params["prepare"]["image_size"] = 64
    params["train"].update(epochs=8, batch_size=16)
    params["explain"].update(images_per_class=5, max_misclassified=0)
    # The outside probe on both sets: what is left without the lungs, with and without the marker. The README's
    # experiment below trains on the marked twin itself, so the probe on the twin's full view is left out, and so
    # is the cascade. None of these says anything of markers.
    params["dataset"]["shortcut_outside"] = {"source": "synthetic_shortcut", "view": "outside"}
    del params["dataset"]["shortcut_full"]
    params["probe"] = {"models": ["resnet18"], "datasets": ["outside", "shortcut_outside"], "cross_tests": []}
    params["shortcut"] = None
    params["cross_tests"] = [test for test in params["cross_tests"] if test["tested_on"] != "lungs_segmented"]
    params["segmented_dataset"] = {}
    return params


# What the tests below read (and whatever these need): the scores, explanations and cross tests of both views,
# the probes' scores and the sources' audits. Neither the segmenter, the probes' maps nor the report says
# anything of markers, so neither the baseline nor the experiment runs them.
TARGETS = ["evaluate@full", "evaluate@lungs", "explain@resnet18-full", "explain@resnet18-lungs",
           "crosstest@test0", "crosstest@test1", "probe_evaluate@outside", "probe_evaluate@shortcut_outside"]


def _metrics(repo: Path) -> dict[str, dict]:
    return {str(path.relative_to(repo)): json.loads(path.read_text()) for path in (repo / "metrics").rglob("*.json")}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict, set[str]]:
    repo = baseline_repo(tmp_path_factory.mktemp("shortcut"), shortcut_params(), targets=TARGETS)
    baseline = _metrics(repo)
    lock_before = (repo / "dvc.lock").read_text()
    dvc_in(repo, "exp", "run", "-n", "shortcut", *EXPERIMENT, *TARGETS)
    before, after = yaml.safe_load(lock_before)["stages"], yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    moved = {name for name in after if after[name] != before.get(name)}
    return repo, baseline, _metrics(repo), moved


def test_lungs_models_are_untouched(experiment):
    _, baseline, shortcut, moved = experiment
    # The twin's lungs view is byte for byte the clean one: nothing downstream of it runs again.
    assert not any(name.endswith("-lungs") or name.endswith("-test1") for name in moved), moved
    for path in ("metrics/classify/lungs/resnet18.json", "metrics/explain/lungs/resnet18.json",
                 "metrics/cross/lungs-on-hospital2_lungs/resnet18.json"):
        assert shortcut[path] == baseline[path], path


def test_full_models_learn_the_marker(experiment):
    _, baseline, shortcut, moved = experiment
    assert {"prepare@full", "train@resnet18-full", "explain@resnet18-full"} <= moved
    explained = "metrics/explain/full/resnet18.json"
    # The maps move off the lungs onto the marker...
    assert shortcut[explained]["cam_lung_energy"] < baseline[explained]["cam_lung_energy"]
    # ... and the second hospital's films, which carry no marker, are classified worse.
    marker_free = "metrics/cross/full-on-hospital2_full/resnet18.json"
    assert shortcut[marker_free]["accuracy"] < baseline[marker_free]["accuracy"]
    # On its own (marked) test split the shortcut model looks at least as good: the trap.
    own = "metrics/classify/full/resnet18.json"
    assert shortcut[own]["accuracy"] >= baseline[own]["accuracy"]


def test_without_the_lungs_only_the_marker_is_left_to_learn(experiment):
    """The outside probe and the metadata-only baseline: near chance on clean films, near 1.0 on marked ones."""
    _, baseline, _, _ = experiment
    clean, marked = baseline["metrics/classify/outside/resnet18.json"], baseline["metrics/classify/shortcut_outside/resnet18.json"]
    assert clean["accuracy_ci_low"] < 0.45 and clean["accuracy"] < 0.55, clean
    # With the marker, what is left outside the lungs is learnt: the intervals do not even overlap.
    assert marked["accuracy_ci_low"] > clean["accuracy_ci_high"], (marked, clean)
    clean_audit, marked_audit = baseline["metrics/data/synthetic.json"], baseline["metrics/data/synthetic_shortcut.json"]
    assert clean_audit["baseline_accuracy_ci_low"] < clean_audit["chance_accuracy"] + 0.1 < 0.5, clean_audit
    assert marked_audit["baseline_accuracy"] > 0.9, marked_audit
