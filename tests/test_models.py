"""Every architecture trains at its smallest input; checkpoints and weight files load safely and offline."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from cxr.models.checkpoints import load_checkpoint, save_checkpoint
from cxr.models.inference import model_input, to_device_format
from cxr.models.registry import STUDY_ARCHS, WeightsError, arch_spec, build_model, min_input_size, pretrained_normalization
from cxr.training.loop import classification_loss

INCEPTION_AUX_MIN_SIZE = arch_spec("inception_v3").aux_min_input_size


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.mark.parametrize("arch", [*STUDY_ARCHS, "timm/convnext_atto"])
def test_forward_and_backward_at_minimum_size(arch):
    """params.yaml accepts any image_size from min_input_size up, so each arch must train there."""
    torch.manual_seed(0)
    size = min_input_size(arch)
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
    size = min_input_size(arch)
    model = build_model(arch, num_classes=3, image_size=size).eval()
    meta = {"arch": arch, "classes": ["COVID-19", "Pneumonia", "Normal"], "image_size": size,
            "mean": [0.5] * 3, "std": [0.25] * 3}
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, meta)
    raw = torch.load(path, weights_only=True)
    assert raw["meta"] == meta
    loaded, loaded_meta = load_checkpoint(path)
    # load_checkpoint hands the model back in channels_last; the same layout on both sides makes the outputs
    # bit-identical rather than equal up to summation order.
    model = to_device_format(model, torch.device("cpu"))
    inputs = torch.randn(2, 3, size, size).contiguous(memory_format=torch.channels_last)
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
    with pytest.raises(WeightsError, match=r"corrupt\.pth is not a readable torch file .*empty or truncated"):
        build_model("resnet18", num_classes=3, image_size=32, weights=str(corrupt))


def test_imagenet_download_offline_explains_the_way_out(monkeypatch, tmp_path, no_network):
    """torchvision's own download runs into the blocked network; the error says how to get the file in."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as caught:
        build_model("resnet34", num_classes=3, image_size=64, weights="imagenet")
    message = str(caught.value)
    assert "Offline?" in message and "https://download.pytorch.org/models/resnet34-" in message
    assert "weights:" in message and str(tmp_path / "hub" / "checkpoints") in message
    # The download went through the real call path into the socket block, and nowhere else.
    assert no_network and "network blocked in tests" in message
    assert files_under(tmp_path) == [], "nothing (not even a partial download) lands in the cache"


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


@torch.no_grad()
def test_pretrained_inception_is_fed_by_model_input_not_by_transform_input(monkeypatch, tmp_path, no_network):
    """torchvision's InceptionV3 weights expect [-1, 1] inputs: model_input must produce them, and the model
    must not re-normalise them (transform_input) on top; the aux head must follow the input size."""
    torch.manual_seed(0)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    # An ImageNet-shaped file in torch.hub's cache under the download's own name: loaded, never fetched.
    imagenet_like = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    cached = tmp_path / "hub" / "checkpoints" / Path(torchvision.models.Inception_V3_Weights.DEFAULT.url).name
    cached.parent.mkdir(parents=True)
    torch.save(imagenet_like.state_dict(), cached)

    model = build_model("inception_v3", num_classes=3, image_size=INCEPTION_AUX_MIN_SIZE, weights="imagenet").eval()
    assert model.transform_input is False
    assert model.fc.out_features == 3 and model.AuxLogits.fc.out_features == 3

    images = torch.randint(0, 256, (1, 1, INCEPTION_AUX_MIN_SIZE, INCEPTION_AUX_MIN_SIZE), dtype=torch.uint8)
    outputs = model(model_input(images, INCEPTION_AUX_MIN_SIZE, *pretrained_normalization("inception_v3")))
    # The cached weights with our head, fed what they were trained on: gray pixels scaled to [-1, 1].
    imagenet_like.transform_input = False
    imagenet_like.fc = model.fc
    expected = imagenet_like((images.float() / 255 - 0.5).div(0.5).expand(-1, 3, -1, -1))
    assert outputs.shape == (1, 3)
    torch.testing.assert_close(outputs, expected)

    small = build_model("inception_v3", num_classes=3, image_size=128, weights="imagenet").train()
    assert small.AuxLogits is None and small.transform_input is False
    assert torch.equal(small.Conv2d_1a_3x3.conv.weight, imagenet_like.Conv2d_1a_3x3.conv.weight)
    assert small(torch.randn(2, 3, 128, 128)).shape == (2, 3), "trains below 299 px without the aux head"
    assert no_network == []


def test_timm_state_dict_file_loads_all_but_the_head(tmp_path):
    """Hugging Face serves timm weights as ImageNet-shaped .safetensors files; `weights: <path>` must take one."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    imagenet_like = timm.create_model("convnext_atto", pretrained=False)
    assert imagenet_like.head.fc.out_features == 1000
    path = tmp_path / "model.safetensors"
    save_file(imagenet_like.state_dict(), path)
    model = build_model("timm/convnext_atto", num_classes=3, image_size=32, weights=str(path))
    assert torch.equal(model.stem[0].weight, imagenet_like.stem[0].weight)
    assert torch.equal(model.head.norm.weight, imagenet_like.head.norm.weight)
    assert model.head.fc.out_features == 3


def test_timm_imagenet_download_offline_explains_the_way_out(monkeypatch, tmp_path, no_network):
    """timm downloads through huggingface_hub, which fails in its own ways; the error still says what to do,
    and doing it (a copied Hugging Face cache folder) works offline."""
    import huggingface_hub.constants
    import huggingface_hub.utils._http
    import timm
    from safetensors.torch import save_file

    cache = tmp_path / "hf_hub_cache"
    for variable in ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / variable.lower()))
    # huggingface_hub reads these at import time.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the network path, not the flag
    # It retries network errors with back-off (about 45 s in all); the retries still hit the block, unslept.
    monkeypatch.setattr(huggingface_hub.utils._http, "time", types.SimpleNamespace(sleep=lambda seconds: None))

    with pytest.raises(WeightsError) as caught:
        build_model("timm/convnext_atto", num_classes=3, image_size=32, weights="imagenet")
    message = str(caught.value)
    assert "Offline?" in message and "weights:" in message
    assert "https://huggingface.co/timm/convnext_atto.d2_in1k/resolve/main/model.safetensors" in message
    folder = "models--timm--convnext_atto.d2_in1k"
    assert f"{folder} of a Hugging Face cache that has it into {cache}" in message
    assert no_network, "the download was attempted, and blocked"
    assert files_under(tmp_path) == []

    # What that copied folder holds: a snapshot of the repository and the ref naming it.
    imagenet_like = timm.create_model("convnext_atto", pretrained=False)
    snapshot = cache / folder / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(imagenet_like.state_dict(), snapshot / "model.safetensors")
    (cache / folder / "refs").mkdir()
    (cache / folder / "refs" / "main").write_text("0" * 40)
    model = build_model("timm/convnext_atto", num_classes=3, image_size=32, weights="imagenet")
    assert torch.equal(model.stem[0].weight, imagenet_like.stem[0].weight) and model.head.fc.out_features == 3
