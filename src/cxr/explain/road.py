"""ROAD (Rong et al. 2022) as pytorch-grad-cam computes it, with its imputation's equation system assembled fast.

pytorch-grad-cam's NoisyLinearImputer fills each removed pixel from its neighbours by solving one sparse linear
system per image and percentile. It assembles the system by fancy assignment into a `lil_matrix`, which takes
about 60 ms per 112-px image, more than the solve itself and half of the explain stage. Here the same entries
go into a COO matrix: the same matrix in the same CSC form, so the same solution and the same scores (checked
bit for bit against the library in tests/test_explain.py). Everything else is the library's own classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve


def sparse_system(mask: np.ndarray, img: np.ndarray, weights: Sequence) -> tuple:
    """NoisyLinearImputer.setup_sparse_system's (A as CSC, b): mask (H, W) with 0 where a pixel is removed,
    img (C, H, W)."""
    known_flat = mask.flatten()
    img_flat = img.reshape((img.shape[0], -1))
    unknown = np.argwhere(known_flat == 0).flatten()
    variable_of = np.zeros(len(known_flat), dtype=int)
    variable_of[unknown] = np.arange(len(unknown))
    equations = len(unknown)
    b = np.zeros((equations, img.shape[0]))
    sum_neighbors = np.ones(equations)
    rows, cols, values = [], [], []
    for offset, weight in weights:
        valid, neighbours = NoisyLinearImputer.add_offset_to_indices(unknown, offset, mask.shape)
        valid_neighbours = neighbours[valid]
        valid_ids = np.argwhere(valid == 1).flatten()
        has_value = known_flat[valid_neighbours] > 0.5
        b[valid_ids[has_value], :] -= weight * img_flat[:, valid_neighbours[has_value]].T
        no_value = known_flat[valid_neighbours] < 0.5
        rows.append(valid_ids[no_value])
        cols.append(variable_of[valid_neighbours[no_value]])
        values.append(np.full(int(no_value.sum()), weight, dtype=np.float64))
        outside = np.argwhere(valid == 0).flatten()
        sum_neighbors[outside] = sum_neighbors[outside] - weight
    rows.append(np.arange(equations))
    cols.append(np.arange(equations))
    values.append(-sum_neighbors)
    system = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(equations, equations)).tocsc()
    return system, b


class FastNoisyLinearImputer(NoisyLinearImputer):
    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        img_flat = img.reshape(img.shape[0], -1)
        unknown = np.argwhere(mask.reshape(-1) == 0).flatten()
        system, b = sparse_system(mask.numpy(), img.numpy(), neighbors_weights)
        solution = torch.tensor(spsolve(system, b), dtype=torch.float)
        filled = img_flat.clone()
        # The library's noise, from torch's global generator as it draws it.
        filled[:, unknown] = solution.t() + self.noise * torch.randn_like(solution.t())
        return filled.reshape_as(img)


def _most_relevant_first(percentile: int) -> PerturbationConfidenceMetric:
    return PerturbationConfidenceMetric(RemoveMostRelevantFirst(percentile, FastNoisyLinearImputer()))


def _least_relevant_first(percentile: int) -> PerturbationConfidenceMetric:
    return PerturbationConfidenceMetric(RemoveLeastRelevantFirst(percentile, FastNoisyLinearImputer()))


class ROADCombined:
    """pytorch-grad-cam's ROADCombined (least relevant first, then most relevant first, in its order of random
    draws) on the fast imputer."""

    def __init__(self, percentiles: Sequence[int]):
        self.lerf = AveragerAcrossThresholds(_least_relevant_first, list(percentiles))
        self.morf = AveragerAcrossThresholds(_most_relevant_first, list(percentiles))

    def __call__(self, input_tensor: torch.Tensor, cams: np.ndarray, targets: list, model: torch.nn.Module) -> np.ndarray:
        scores_lerf = self.lerf(input_tensor, cams, targets, model)
        scores_morf = self.morf(input_tensor, cams, targets, model)
        return (scores_lerf - scores_morf) / 2
