"""The contract of every Ultralytics internal cxr.segment.yolo touches, on the installed Ultralytics (pyproject
allows one minor series): an upgrade that changes one fails here, by name, rather than deep inside a stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr.segment.yolo import (
    average_precision,
    crop_to_boxes,
    head_input_layer,
    head_outputs,
    kept_detections,
    mask_overlaps,
    matches_at,
    restricted_loader,
    ultralytics_offline,
)

SIZE = 64
THRESHOLDS = torch.linspace(0.5, 0.95, 10)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """An untrained YOLOv8n-seg with two classes, built from Ultralytics' own model file (no download)."""
    ultralytics_offline(tmp_path_factory.mktemp("ultralytics"))
    from ultralytics.nn.tasks import SegmentationModel

    return SegmentationModel("yolov8n-seg.yaml", nc=2, verbose=False).eval()


def test_the_head_gives_predictions_per_anchor_and_quarter_size_prototypes(net):
    with torch.no_grad():
        predictions, prototypes = head_outputs(net, torch.rand(2, 3, SIZE, SIZE))
    anchors = sum((SIZE // stride) ** 2 for stride in (8, 16, 32))
    assert predictions.shape == (2, 4 + 2 + 32, anchors)
    assert prototypes.shape == (2, 32, SIZE // 4, SIZE // 4)


def test_the_head_input_layer_is_the_stride_8_feature_map(net):
    layer, grids = net.model[head_input_layer(net)], []
    hook = layer.register_forward_hook(lambda _m, _i, output: grids.append(tuple(output.shape[-2:])))
    try:
        with torch.no_grad():
            net(torch.rand(1, 3, SIZE, SIZE))
    finally:
        hook.remove()
    assert grids == [(SIZE // 8, SIZE // 8)]


def raw_predictions() -> torch.Tensor:
    """One image, three anchors: a confident class-1 box, a near-copy of it (suppressed), a faint one (below)."""
    anchors = []
    for centre, score in (((20, 20), 0.9), ((21, 20), 0.8), ((45, 45), 0.1)):
        row = torch.zeros(4 + 2 + 32)
        row[:4] = torch.tensor([*centre, 10, 10])  # centre x, centre y, width, height
        row[4 + 1] = score
        row[6:] = 0.5
        anchors.append(row)
    return torch.stack(anchors, dim=1)[None]


def test_nms_keeps_the_best_of_overlapping_boxes_above_the_confidence():
    (kept,) = kept_detections(raw_predictions(), 0.25, 2)
    assert kept.shape == (1, 6 + 32)
    assert kept[0, :4].tolist() == [15, 15, 25, 25] and kept[0, 4].item() == pytest.approx(0.9)
    assert kept[0, 5].item() == 1 and torch.allclose(kept[0, 6:], torch.full((32,), 0.5))
    _, (anchors,) = kept_detections(raw_predictions(), 0.25, 2, with_anchors=True)
    assert anchors.view(-1).long().tolist() == [0]


def test_masks_are_cropped_to_their_boxes():
    cropped = crop_to_boxes(torch.ones(1, 8, 8), torch.tensor([[2.0, 1.0, 5.0, 7.0]]))
    expected = torch.zeros(8, 8)
    expected[1:7, 2:5] = 1
    assert torch.equal(cropped[0], expected)


def test_overlaps_match_each_truth_once_at_the_thresholds_they_reach():
    truth = torch.zeros(1, 100)
    truth[0, :50] = 1
    predicted = torch.zeros(2, 100)
    predicted[0, :35] = 1  # IoU 0.70 with the truth
    predicted[1, :50] = 1  # IoU 1.0
    overlaps = mask_overlaps(truth, predicted)
    assert overlaps.tolist() == [[pytest.approx(0.7), pytest.approx(1.0)]]
    matched = matches_at(THRESHOLDS, torch.tensor([0, 0]), torch.tensor([0]), overlaps)
    # One truth, matched once at each threshold, never by a prediction below that threshold's IoU.
    assert matched.sum(axis=0).tolist() == [1] * 10
    assert not matched[0, THRESHOLDS > 0.7 + 1e-6].any() and matched[1, THRESHOLDS > 0.7 + 1e-6].all()
    assert not matches_at(THRESHOLDS, torch.tensor([1, 1]), torch.tensor([0]), overlaps).any()  # another class


def test_average_precision_is_one_for_perfect_and_zero_for_missed_detections():
    perfect = average_precision(np.ones((2, 10), dtype=bool), np.array([0.9, 0.8]), np.array([0, 0]), np.array([0, 0]))
    assert perfect.shape == (1, 10) and perfect.min() > 0.99
    missed = average_precision(np.zeros((2, 10), dtype=bool), np.array([0.9, 0.8]), np.array([0, 0]), np.array([0, 0]))
    assert missed.max() == 0


class Payload:
    """Any pickled object that is no network layer: loading it could run code."""


def test_the_restricted_loader_reads_a_network_and_refuses_other_objects(net, tmp_path):
    load = restricted_loader()
    assert load is not None, "this torch and Ultralytics cannot load weights-only"
    torch.save({"model": net}, tmp_path / "net.pt")
    assert isinstance(load(tmp_path / "net.pt")["model"], type(net))
    torch.save({"model": Payload()}, tmp_path / "other.pt")
    with pytest.raises(Exception, match="outside the supported"):
        load(tmp_path / "other.pt")
