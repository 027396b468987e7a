"""The committed results reproduce: on a fresh clone with the pinned environment (requirements.lock),
the data stages (generate, index, prepare) write exactly the outputs whose hashes the committed dvc.lock records.

This catches drift (a dependency whose new release draws other pixels, a code change without a new
default run) in CI, when it happens, instead of on a user's machine.
"""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import REPO, copy_pipeline, dvc_in, run_in

STAGES = ["generate@synthetic", "generate_radiography@synthetic_hospital2", "index@synthetic", "index@synthetic_hospital2",
          "prepare@full", "prepare@lungs", "prepare@hospital2_full", "prepare@hospital2_lungs"]


def _outs(lock: dict, stage: str) -> list[dict]:
    return [{key: out[key] for key in ("path", "md5", "size", "nfiles") if key in out} for out in lock["stages"][stage]["outs"]]


@pytest.mark.pipeline
def test_data_stages_reproduce_the_committed_hashes(tmp_path):
    copy_pipeline(tmp_path)
    for name in ("params.yaml", "dvc.lock"):
        (tmp_path / name).write_bytes((REPO / name).read_bytes())
    run_in(tmp_path, "git", "init", "-q")
    dvc_in(tmp_path, "repro", "--single-item", *STAGES)
    committed = yaml.safe_load((REPO / "dvc.lock").read_text())
    reproduced = yaml.safe_load((tmp_path / "dvc.lock").read_text())
    for stage in STAGES:
        assert _outs(reproduced, stage) == _outs(committed, stage), (
            f"{stage} no longer reproduces the committed dvc.lock: same requirements.lock installed? "
            f"If the change is intended, rerun `dvc repro` and commit dvc.lock")
