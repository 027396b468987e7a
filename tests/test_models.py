"""Every architecture trains at its smallest input; checkpoints and weight files load safely and offline."""

from __future__ import annotations

import re
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from stages.models import (
    INCEPTION_AUX_MIN_SIZE, WeightsError, build_model, classification_loss, load_checkpoint, save_checkpoint,
)
from stages.params import MIN_INPUT_SIZE


@pytest.mark.parametrize("arch", sorted(MIN_INPUT_SIZE))
def test_forward_and_backward_at_minimum_size(arch):
    torch.manual_seed(0)
    size = MIN_INPUT_SIZE[arch]
    model = build_model(arch, num_classes=3, image_size=size).train()
    inputs = torch.randn(2, 3, size, size)
    loss = classification_loss(model(inputs), torch.tensor([0, 2]), nn.CrossEntropyLoss())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        assert model(inputs).shape == (2, 3)


def test_inception_trains_its_auxiliary_head_at_full_size():
    torch.manual_seed(0)
    model = build_model("inception_v3", num_classes=3, image_size=INCEPTION_AUX_MIN_SIZE).train()
    outputs = model(torch.randn(2, 3, INCEPTION_AUX_MIN_SIZE, INCEPTION_AUX_MIN_SIZE))
    assert isinstance(outputs, torchvision.models.InceptionOutputs) and outputs.aux_logits.shape == (2, 3)
    criterion = nn.CrossEntropyLoss()
    targets = torch.tensor([1, 2])
    expected = criterion(outputs.logits, targets) + 0.4 * criterion(outputs.aux_logits, targets)
    assert classification_loss(outputs, targets, criterion).item() == pytest.approx(expected.item())
    small = build_model("inception_v3", num_classes=3, image_size=INCEPTION_AUX_MIN_SIZE - 1)
    assert small.AuxLogits is None


@pytest.mark.parametrize("arch", ["resnet18", "inception_v3"])
def test_checkpoint_round_trip_with_weights_only(tmp_path, arch):
    torch.manual_seed(0)
    size = MIN_INPUT_SIZE[arch]
    model = build_model(arch, num_classes=3, image_size=size).eval()
    meta = {"arch": arch, "classes": ["COVID-19", "Pneumonia", "Normal"], "image_size": size,
            "mean": [0.5] * 3, "std": [0.25] * 3}
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, meta)
    raw = torch.load(path, weights_only=True)
    assert raw["meta"] == meta
    loaded, loaded_meta = load_checkpoint(path)
    inputs = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(model(inputs), loaded(inputs))
    assert loaded_meta == meta
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"], "no temporary files left behind"


def test_imagenet_shaped_state_dict_file_loads_all_but_the_head(tmp_path):
    torch.manual_seed(0)
    imagenet_like = torchvision.models.resnet18(weights=None)  # 1000-class head, like the downloaded file
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(imagenet_like.state_dict(), path)
    model = build_model("resnet18", num_classes=3, image_size=32, weights=str(path))
    assert torch.equal(model.conv1.weight, imagenet_like.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, imagenet_like.layer4[1].bn2.running_var)
    assert model.fc.out_features == 3


def test_state_dict_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "densenet.pth"
    torch.save(torchvision.models.densenet121(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="does not fit this architecture"):
        build_model("resnet18", num_classes=3, image_size=32, weights=str(path))


def test_missing_and_corrupt_weights_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        build_model("resnet18", num_classes=3, image_size=32, weights=str(tmp_path / "nope.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match="not a loadable state-dict file"):
        build_model("resnet18", num_classes=3, image_size=32, weights=str(corrupt))


def test_imagenet_download_offline_explains_the_way_out(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as caught:
        build_model("resnet34", num_classes=3, image_size=64, weights="imagenet")
    message = str(caught.value)
    assert "Offline?" in message and "https://download.pytorch.org/models/resnet34" in message
    assert "weights:" in message


def test_torchvision_densenet_file_with_old_key_names_loads(tmp_path):
    """torchvision's published DenseNet files still use 'norm.1'-style keys."""
    torch.manual_seed(0)
    reference = torchvision.models.densenet161(weights=None)
    old_style = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value
                 for key, value in reference.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old_style
    path = tmp_path / "densenet161-old-keys.pth"
    torch.save(old_style, path)
    model = build_model("densenet161", num_classes=3, image_size=32, weights=str(path))
    assert torch.equal(model.features.denseblock1.denselayer1.norm1.weight,
                       reference.features.denseblock1.denselayer1.norm1.weight)


def test_pretrained_inception_is_fed_by_model_input_not_by_transform_input():
    from stages.models import pretrained_normalization

    assert pretrained_normalization("inception_v3") == ((0.5,) * 3, (0.5,) * 3)
    assert pretrained_normalization("resnet18")[0] == (0.485, 0.456, 0.406)
