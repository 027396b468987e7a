"""The order of the training images, epoch after epoch, and each process's shard of it under torchrun."""

from __future__ import annotations

import numpy as np
import torch

from cxr.training.params import TrainParams
from cxr.training.processes import Processes


class EpochOrders:
    """Each epoch's order of the training images (a tensor of indices) this process trains on.

    Drawn from one generator seeded with train.seed: a permutation, or with class_balance: sampler as many
    draws with replacement, weighted by 1 / class count (torch's RandomSampler and WeightedRandomSampler), as
    one tensor: no Python call per image.

    Several processes draw the same order and each takes every world-th image of it, padded at the end to a
    multiple of the world size as torch's DistributedSampler pads: with batches of batch_size / world per
    process, step k of all processes together trains on exactly the images of one process's step k.
    """

    def __init__(self, labels: np.ndarray, num_classes: int, train_params: TrainParams, processes: Processes):
        self.count, self.processes = len(labels), processes
        self.generator = torch.Generator().manual_seed(train_params.seed)
        self.weights = None
        if train_params.class_balance == "sampler":
            per_class = 1.0 / np.bincount(labels, minlength=num_classes).clip(min=1)
            self.weights = torch.as_tensor(per_class[labels], dtype=torch.double)

    def next_epoch(self) -> torch.Tensor:
        if self.weights is None:
            order = torch.randperm(self.count, generator=self.generator)
        else:
            order = torch.multinomial(self.weights, self.count, replacement=True, generator=self.generator)
        return self.processes.shard(order)
