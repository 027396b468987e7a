"""Schemas of the `probe` and `shortcut` sections of params.yaml (the single-model runs the report compares)."""

from __future__ import annotations

from pydantic import model_validator

from cxr.params import NameList, Section


class ProbeCrossTest(Section):
    trained_on: str  # one of the probe's datasets
    tested_on: str


class ProbeParams(Section):
    """Each model here trains on each dataset here, beside the models x datasets grid; [] for none."""

    models: NameList
    datasets: NameList
    cross_tests: list[ProbeCrossTest]

    @model_validator(mode="after")
    def _trained_by_the_probe(self) -> ProbeParams:
        for test in self.cross_tests:
            if test.trained_on not in self.datasets:
                raise ValueError(f"cross_tests: trained_on {test.trained_on!r} is not in the probe's datasets "
                                 f"{self.datasets}: no probe model is trained on it")
            if test.tested_on == test.trained_on:
                raise ValueError(f"cross_tests: tested_on {test.tested_on!r} is the dataset the probe trained on; "
                                 f"the probe's own evaluation covers that")
        return self


class ShortcutParams(Section):
    """The probe on a marked twin, read by the report beside the same models on clean films."""

    dataset: str  # a probe dataset on the marked twin (full view)
    clean: str  # the same view of the clean films, one of `datasets`
    marker_free: str  # a test dataset whose films carry no marker: a probe cross test of `dataset`
