"""Training: a tiny model really learns (and a label-free control does not), augmentation and model input,
class balancing, and the checkpoint and dvclive log that change only together."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cxr.training.loop as loop
from cxr.data.views import make_view
from cxr.io.arrays import SplitArrays
from cxr.io.log import EpochLogError, epoch_log
from cxr.models.checkpoints import load_checkpoint
from cxr.models.inference import SplitBatches, model_input, predict_probabilities
from cxr.models.params import ModelParams
from cxr.synthetic.generator import CLASSES, render_case
from cxr.training.augment import augment_batch
from cxr.training.loop import class_weights, train_classifier
from cxr.training.order import EpochOrders
from cxr.training.params import AugmentParams, TrainParams
from cxr.training.processes import SINGLE, Processes
from cxr.training.resume import (
    RESUME_DIR,
    load_point,
    random_states,
    restore_random_states,
    resume_file,
    save_point,
)
from tests.conftest import REPO, default_params

CPU = torch.device("cpu")
NO_AUGMENT = AugmentParams(rotation_degrees=0, scale=(1, 1), translate=0, brightness=0, contrast=0,
                           horizontal_flip=False)
# The augmentation of the repository's params.yaml.
DEFAULT_AUGMENT = TrainParams.model_validate(default_params()["train"]).augment
SMALL_RESNET = ModelParams(arch="resnet18", image_size=32, lr=1e-3)


def train_params(epochs: int = 1, class_balance: str = "none", seed: int = 0, batch_size: int = 16,
                 augment: AugmentParams = NO_AUGMENT) -> TrainParams:
    return TrainParams(seed=seed, epochs=epochs, batch_size=batch_size, weight_decay=0, class_balance=class_balance,
                       processes=1, augment=augment)


def synthetic_split(per_class: int, seed: int) -> SplitArrays:
    """Synthetic films in the prepared `lungs` view (lungs only, cropped to them) at 48 px, class-sorted."""
    images, masks, labels = [], [], []
    for label, name in enumerate(CLASSES):
        for i in range(per_class):
            film, lungs = render_case(np.random.default_rng([seed, label, i]), name, 96)
            image, mask = make_view(film, lungs, "lungs", 48, 0.05)
            images.append(image)
            masks.append(mask)
            labels.append(label)
    names = np.array([f"{CLASSES[c]}/{i}.png" for i, c in enumerate(labels)])
    return SplitArrays(np.stack(images), np.stack(masks), np.array(labels, dtype=np.int64), names)


@pytest.fixture(scope="module")
def films() -> dict[str, SplitArrays]:
    """Disjoint train/val/test sets (different generator seeds): 30/9/30 films per class."""
    return {"train": synthetic_split(30, 0), "val": synthetic_split(9, 1), "test": synthetic_split(30, 2)}


def with_labels(split: SplitArrays, labels: np.ndarray) -> SplitArrays:
    return SplitArrays(split.images, split.masks, labels.astype(np.int64), split.names)


def label_free(split: SplitArrays, rng: np.random.Generator) -> SplitArrays:
    """Labels shuffled so that, in this very sample, each true class carries every label equally often.

    A plain permutation keeps some agreement with the true classes by chance (39% for one seed), which a
    model can pick up; here the table of true class x training label is flat, so the labels say nothing.
    """
    labels = split.labels.copy()
    for c in range(len(CLASSES)):
        members = np.flatnonzero(split.labels == c)
        labels[members] = rng.permutation(np.arange(len(members)) % len(CLASSES))
    return with_labels(split, labels)


def every_fifth(split: SplitArrays) -> SplitArrays:
    """18 training films (6 per class): enough for one quick epoch."""
    return SplitArrays(split.images[::5], split.masks[::5], split.labels[::5], split.names[::5])


def heldout_accuracy(checkpoint: Path, test: SplitArrays) -> float:
    model, meta = load_checkpoint(checkpoint)
    probabilities = predict_probabilities(model, SplitBatches(test, 64, CPU), meta["image_size"], meta["mean"], meta["std"], CPU)
    return float((probabilities.argmax(axis=1) == test.labels).mean())


def train(train_split: SplitArrays, val_split: SplitArrays, out: Path, params: TrainParams,
          model: ModelParams = SMALL_RESNET, resume: tuple[Path, str] | None = None) -> dict:
    return train_classifier(train_split, val_split, list(CLASSES), model, params, CPU, out / "models" / "m.pt",
                            out / "logs" / "m", {"dataset": "test"}, desc="test", resume=resume)


# 1. Learning, and the controls that show the accuracy comes from the images and their labels.

def test_tiny_model_clearly_beats_chance(films, workdir):
    """The training loop as a whole learns: 5 epochs of resnet18 at 32 px reach well above 1/3 on unseen films.

    A loop that never updates the weights, feeds the wrong labels or mangles the input would stay near 1/3.
    Measured: 0.83 held-out accuracy (0.79-0.89 over train seeds 0-3).
    """
    train(films["train"], films["val"], workdir, train_params(epochs=5))
    accuracy = heldout_accuracy(workdir / "models" / "m.pt", films["test"])
    assert accuracy > 0.65, accuracy


def test_label_free_training_stays_at_chance(films, workdir):
    """The same training with labels that carry no information must not beat chance on held-out films.

    Otherwise the accuracy above could come from somewhere else than the image-label association (leaked
    test data, a scorer that favours some outcome). Train and val labels are both shuffled, so not even
    the best-epoch choice sees a true label. Measured: 0.34 (0.28-0.43 over seeds 0-3).
    """
    rng = np.random.default_rng(0)
    train(label_free(films["train"], rng), label_free(films["val"], rng), workdir, train_params(epochs=5))
    accuracy = heldout_accuracy(workdir / "models" / "m.pt", films["test"])
    assert accuracy < 0.5, accuracy


def test_blank_images_give_chance_accuracy(films, workdir):
    """With all-zero images nothing can be learnt: one prediction for every film, 1/3 on the balanced test set."""
    blank = {name: SplitArrays(np.zeros_like(s.images), s.masks, s.labels, s.names) for name, s in films.items()}
    train(every_fifth(blank["train"]), blank["val"], workdir, train_params(batch_size=8))
    assert heldout_accuracy(workdir / "models" / "m.pt", blank["test"]) == pytest.approx(1 / 3)


# 2. Model input and augmentation.

def asymmetric_batch(n: int, size: int = 24, seed: int = 0) -> torch.Tensor:
    """[0, 1] float images (n, 1, size, size), each clearly different from its mirror image."""
    pixels = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 0.5
    pixels[..., : size // 3] += 0.5  # a bright left third
    return pixels


def test_model_input_is_normalised_resized_pixels():
    """model_input feeds (B, 3, size, size) floats: the resized [0, 1] pixels minus mean over std, per channel.

    The reference resize is PIL's bilinear (antialiased) one, independent of torch; a wrong scale (0-255),
    a swapped mean/std or a missing antialias shows here.
    """
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(2, 1, 64, 48), dtype=np.uint8))
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    inputs = model_input(images, 32, mean, std)
    assert inputs.shape == (2, 3, 32, 32) and inputs.dtype == torch.float32
    pixels = inputs * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    for i in range(2):
        reference = np.asarray(Image.fromarray(images[i, 0].numpy().astype(np.float32) / 255, mode="F")
                               .resize((32, 32), Image.Resampling.BILINEAR))
        for channel in range(3):
            np.testing.assert_allclose(pixels[i, channel].numpy(), reference, atol=2e-3)
    # At the model's own size the pixels pass unchanged.
    same = model_input(images[:, :, :32, :32], 32, mean, std)
    expected = images[:, :, :32, :32].float() / 255
    unnormalised = same * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    torch.testing.assert_close(unnormalised, expected.expand(-1, 3, -1, -1), atol=1e-6, rtol=0)


def test_model_input_applies_the_transform_before_normalisation():
    """Augmentation must act on [0, 1] pixels (its clamp and brightness assume them), not on normalised input."""
    images = torch.full((1, 1, 32, 32), 255, dtype=torch.uint8)
    seen = []

    def halve(pixels: torch.Tensor) -> torch.Tensor:
        seen.append(pixels.clone())
        return pixels * 0.5

    inputs = model_input(images, 32, (0.5,) * 3, (0.25,) * 3, halve)
    assert torch.equal(seen[0], torch.ones(1, 1, 32, 32))
    assert torch.allclose(inputs, torch.zeros(1, 3, 32, 32))  # (0.5 - 0.5) / 0.25


@pytest.mark.parametrize("augment", [DEFAULT_AUGMENT, AugmentParams(
    rotation_degrees=45, scale=(0.5, 2.0), translate=0.3, brightness=1.0, contrast=1.0, horizontal_flip=True)])
def test_augment_keeps_shape_and_range(augment):
    """Augmented pixels stay [0, 1] images of the same shape, even under the strongest settings."""
    pixels = asymmetric_batch(16)
    out = augment_batch(pixels, augment, torch.Generator().manual_seed(0))
    assert out.shape == pixels.shape and out.dtype == pixels.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, pixels, atol=1e-3)  # it did change them


def test_augment_is_seeded():
    """Same generator seed, same augmentation (reproducible training); another seed, another augmentation."""
    pixels = asymmetric_batch(8)
    first = augment_batch(pixels, DEFAULT_AUGMENT, torch.Generator().manual_seed(3))
    again = augment_batch(pixels, DEFAULT_AUGMENT, torch.Generator().manual_seed(3))
    other = augment_batch(pixels, DEFAULT_AUGMENT, torch.Generator().manual_seed(4))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other, atol=1e-3)


def test_augment_with_everything_off_is_the_identity():
    """Zero rotation, unit scale, no shift, brightness, contrast or flip: the images come back unchanged."""
    pixels = asymmetric_batch(8)
    out = augment_batch(pixels, NO_AUGMENT, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, pixels, atol=1e-5, rtol=0)


def test_no_horizontal_flip_by_default():
    """Anatomy is not mirror-symmetric (heart on the left): with params.yaml's augmentation no film is mirrored."""
    pixels = asymmetric_batch(64)
    out = augment_batch(pixels, DEFAULT_AUGMENT, torch.Generator().manual_seed(0))
    third = pixels.shape[-1] // 3
    left, right = out[..., :third].mean(dim=(1, 2, 3)), out[..., -third:].mean(dim=(1, 2, 3))
    assert (left > right + 0.2).all()


def test_horizontal_flip_mirrors_about_half_of_the_batch():
    """horizontal_flip: true mirrors each image with probability 1/2, exactly (no other change when all else is off)."""
    pixels = asymmetric_batch(64)
    flip_only = NO_AUGMENT.model_copy(update={"horizontal_flip": True})
    out = augment_batch(pixels, flip_only, torch.Generator().manual_seed(0))
    unchanged = (out - pixels).abs().amax(dim=(1, 2, 3)) < 1e-5
    mirrored = (out - torch.flip(pixels, dims=[-1])).abs().amax(dim=(1, 2, 3)) < 1e-5
    assert (unchanged ^ mirrored).all(), "each image is either kept or mirrored"
    assert 20 <= int(mirrored.sum()) <= 44, int(mirrored.sum())


# 3. Class balance.

def imbalanced_split(counts: tuple[int, ...] = (60, 20, 10)) -> SplitArrays:
    """Tiny 1-px images whose pixel value is the item's index, so a loader's draws can be traced back."""
    labels = np.repeat(np.arange(len(counts)), counts)
    images = np.arange(len(labels), dtype=np.uint8).reshape(-1, 1, 1)
    names = np.array([str(i) for i in range(len(labels))])
    return SplitArrays(images, np.zeros_like(images, dtype=bool), labels, names)


def drawn_indices(split: SplitArrays, class_balance: str, epochs: int, processes: Processes = SINGLE,
                  seed: int = 0) -> list[np.ndarray]:
    """The images of each epoch's batches, as the training loop gets them (an image's pixels are its index)."""
    params = train_params(class_balance=class_balance, seed=seed)
    orders = EpochOrders(split.labels, len(CLASSES), params, processes)
    batches = SplitBatches(split, processes.share_of(params.batch_size), CPU)
    return [torch.cat([images.flatten() for images, _ in batches.in_order(orders.next_epoch())]).numpy().astype(int)
            for _ in range(epochs)]


@pytest.mark.parametrize("class_balance", ["sampler", "none"])
def test_the_epoch_orders_follow_the_seed(class_balance):
    """The same train.seed draws the same batches, epoch after epoch; another seed other ones."""
    split = imbalanced_split()
    assert all(np.array_equal(a, b) for a, b in zip(drawn_indices(split, class_balance, 3),
                                                    drawn_indices(split, class_balance, 3), strict=True))
    other = drawn_indices(split, class_balance, 1, seed=1)[0]
    assert not np.array_equal(other, drawn_indices(split, class_balance, 1)[0])


def test_processes_share_every_batch():
    """Two processes: each trains on half of every batch, and together on exactly the batches one process
    would train on; a split of odd size is padded by repeating its first images, as DistributedSampler pads."""
    split = imbalanced_split((20, 7, 4))  # 31 images: 16 per process
    one = drawn_indices(split, "none", 2)
    ranks = [drawn_indices(split, "none", 2, Processes(rank, 2)) for rank in range(2)]
    for epoch, whole in enumerate(one):
        shards = [ranks[rank][epoch] for rank in range(2)]
        assert [len(shard) for shard in shards] == [16, 16]
        for step in range(2):  # batches of 8 per process, 16 together
            together = np.concatenate([shard[step * 8:(step + 1) * 8] for shard in shards])
            padded = np.concatenate([whole, whole[:1]])
            assert sorted(together) == sorted(padded[step * 16:(step + 1) * 16])


def test_sampler_draws_classes_evenly_from_imbalanced_data():
    """class_balance: sampler over-samples rare classes: ~1/3 of the draws each, although the data is 67/22/11%."""
    split = imbalanced_split()
    draws = np.concatenate(drawn_indices(split, "sampler", 30))
    assert len(draws) == 30 * len(split)
    frequencies = np.bincount(split.labels[draws], minlength=3) / len(draws)
    np.testing.assert_allclose(frequencies, 1 / 3, atol=0.04)


@pytest.mark.parametrize("class_balance", ["none", "loss"])
def test_without_sampler_each_epoch_is_a_shuffle_of_the_data(class_balance):
    """none and loss draw every image once per epoch, in a new order each time: the data's own imbalance."""
    split = imbalanced_split()
    epochs = drawn_indices(split, class_balance, 3)
    for indices in epochs:
        assert sorted(indices) == list(range(len(split)))
    assert not np.array_equal(epochs[0], np.arange(len(split))) and not np.array_equal(epochs[0], epochs[1])


def test_class_weights_are_inverse_frequency_only_for_loss():
    """loss: weights proportional to 1/count, averaging 1 per training image (the loss keeps its scale);
    sampler and none: all ones, or the imbalance would be corrected twice (sampler) or at all (none)."""
    split = imbalanced_split((60, 20, 10))
    weights = class_weights(split, 3, train_params(class_balance="loss")).numpy()
    np.testing.assert_allclose(weights, [0.5, 1.5, 3.0], rtol=1e-6)
    assert weights[split.labels].mean() == pytest.approx(1.0)
    balanced = imbalanced_split((10, 10, 10))
    np.testing.assert_allclose(class_weights(balanced, 3, train_params(class_balance="loss")).numpy(), 1.0)
    for mode in ("sampler", "none"):
        assert torch.equal(class_weights(split, 3, train_params(class_balance=mode)), torch.ones(3))


@pytest.mark.parametrize("class_balance", ["sampler", "none", "loss"])
def test_train_classifier_runs_end_to_end(films, workdir, class_balance, no_network):
    """Each class_balance mode trains offline and writes a loadable checkpoint plus its dvclive log."""
    params = train_params(class_balance=class_balance, batch_size=8, augment=DEFAULT_AUGMENT)
    meta = train(every_fifth(films["train"]), films["val"], workdir, params)
    model, saved = load_checkpoint(workdir / "models" / "m.pt")
    assert saved == meta and meta["epoch"] == 1 and meta["dataset"] == "test" and meta["classes"] == list(CLASSES)
    summary = json.loads((workdir / "logs" / "m" / "metrics.json").read_text())
    assert summary["best"]["epoch"] == 1
    assert summary["val"]["macro_f1"] == pytest.approx(meta["val_macro_f1"])
    assert no_network == []


def test_training_leaves_the_process_as_it_found_it(films, workdir):
    """Seeds and deterministic kernels hold for the run only: a notebook or sweep training twice in one process
    finds its own generators and settings afterwards (the suite's guard checks the flags after every test too)."""
    from tests.global_state import flags, generators

    before_flags, before_generators = flags(), generators()
    train(every_fifth(films["train"]), films["val"], workdir, train_params(batch_size=8))
    after_generators = generators()
    assert flags() == before_flags
    assert after_generators[0] == before_generators[0]
    assert all(np.array_equal(a, b) for a, b in zip(after_generators[1][1:3], before_generators[1][1:3]))
    assert torch.equal(after_generators[2], before_generators[2])


# 4. The dvclive log and the checkpoint change only together.

def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C half-way: a BaseException, which no `except Exception` may swallow."""


def fail_in_epoch(monkeypatch, epoch: int):
    real, calls = loop.train_one_epoch, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", flaky)


def fail_in_second_epoch(monkeypatch):
    fail_in_epoch(monkeypatch, 2)


def fail_saving_checkpoint(monkeypatch):
    def broken(path, model, meta):
        raise Interrupted

    monkeypatch.setattr(loop, "save_checkpoint", broken)


@pytest.mark.parametrize("failure", [fail_in_second_epoch, fail_saving_checkpoint])
def test_failed_run_leaves_previous_log_and_checkpoint(films, workdir, monkeypatch, failure):
    """A run that dies mid-training, or after its log is complete but while saving the model, leaves the
    previous log and checkpoint byte for byte, still describing the same model, and no temporaries beside them."""
    train(every_fifth(films["train"]), films["val"], workdir, train_params(epochs=1, batch_size=8))
    log, checkpoint = workdir / "logs" / "m", workdir / "models" / "m.pt"
    before_log, before_checkpoint = snapshot(log), checkpoint.read_bytes()
    assert "metrics.json" in before_log

    failure(monkeypatch)
    with pytest.raises(Interrupted):
        train(every_fifth(films["train"]), films["val"], workdir, train_params(epochs=2, batch_size=8, seed=1))
    assert snapshot(log) == before_log
    assert checkpoint.read_bytes() == before_checkpoint
    assert leftovers(workdir) == []


def test_next_run_removes_what_a_killed_run_left(films, workdir):
    """A SIGKILLed writer cannot clean up: the next successful run removes its temporaries (a dead pid's)."""
    log, checkpoint = workdir / "logs" / "m", workdir / "models" / "m.pt"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed_log = log.parent / f".{log.name}.tmp-{dead.pid}-xyz"
    killed_checkpoint = checkpoint.parent / f".{checkpoint.name}.tmp-{dead.pid}-abc.pt"
    killed_log.mkdir(parents=True)
    (killed_log / "metrics.json").write_text("{}")
    checkpoint.parent.mkdir(parents=True)
    killed_checkpoint.write_bytes(b"half a checkpoint")
    train(every_fifth(films["train"]), films["val"], workdir, train_params(epochs=1, batch_size=8))
    assert (log / "metrics.json").exists() and checkpoint.exists()
    assert leftovers(workdir) == []


def test_a_repository_without_commits_gets_the_fix_not_a_traceback(tmp_path, monkeypatch):
    """dvclive needs a commit even when it saves no experiment; a fresh `git init` must say so."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EpochLogError, match=r"git commit"):
        epoch_log(tmp_path / "log")
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start"], cwd=tmp_path,
                   check=True)
    with epoch_log(tmp_path / "log") as live:
        live.log_metric("loss", 1.0)
        live.next_step()
    assert (tmp_path / "log" / "metrics.json").is_file()


# 5. A killed training goes on from its last completed epoch.

def test_a_run_killed_in_epoch_three_of_four_resumes_to_the_same_bytes(films, workdir, monkeypatch, capsys):
    """Killed during its third epoch and run again, a training goes on after epoch 2 and writes the checkpoint
    and log an uninterrupted run writes, byte for byte; the resume point is gone afterwards. With augmentation,
    so its generator must go on where it was too."""
    split, params = every_fifth(films["train"]), train_params(epochs=4, batch_size=8, augment=DEFAULT_AUGMENT)
    train(split, films["val"], workdir / "whole", params)
    point = resume_file(workdir / "killed" / "models" / "m.pt")
    assert point == RESUME_DIR / "killed" / "models" / "m.pt"
    with monkeypatch.context() as patched:
        fail_in_epoch(patched, 3)
        with pytest.raises(Interrupted):
            train(split, films["val"], workdir / "killed", params, resume=(point, "key"))
    assert len(torch.load(point, weights_only=True)["logged"]) == 2
    capsys.readouterr()
    train(split, films["val"], workdir / "killed", params, resume=(point, "key"))
    assert "resuming after epoch 2 of 4" in capsys.readouterr().out
    assert (workdir / "killed" / "models" / "m.pt").read_bytes() == (workdir / "whole" / "models" / "m.pt").read_bytes()
    assert snapshot(workdir / "killed" / "logs" / "m") == snapshot(workdir / "whole" / "logs" / "m")
    assert not (workdir / RESUME_DIR).exists()


def test_a_resume_point_lies_at_its_checkpoints_path_in_the_ignored_folder(workdir):
    """Outside every output (evaluate depends on the checkpoints' folder), one per checkpoint, wherever that is."""
    assert resume_file(Path("models/full/resnet18.pt")) == RESUME_DIR / "models" / "full" / "resnet18.pt"
    assert resume_file(workdir / "models" / "full" / "resnet18.pt") == RESUME_DIR / "models" / "full" / "resnet18.pt"
    elsewhere = [resume_file(Path(f"/{root}/models/full/resnet18.pt")) for root in ("a", "b")]
    assert elsewhere[0] != elsewhere[1] and all(point.parts[0] == RESUME_DIR.name for point in elsewhere)
    above = resume_file(Path("../x/models/m.pt"))
    assert above.parts[0] == RESUME_DIR.name and ".." not in above.parts
    for ignore_file in (".gitignore", ".dvcignore"):
        assert f"/{RESUME_DIR.as_posix()}/" in (REPO / ignore_file).read_text().splitlines(), ignore_file


def test_a_resume_point_of_another_run_or_cut_short_is_not_used(tmp_path, capsys):
    point = tmp_path / "m.pt"
    save_point(point, "this run", {"logged": []})
    assert load_point(point, "this run") == {"key": "this run", "logged": []}
    assert load_point(point, "another run") is None and "other params, data or code" in capsys.readouterr().out
    point.write_bytes(point.read_bytes()[:40])
    assert load_point(point, "this run") is None and "not a usable resume point" in capsys.readouterr().out


def test_random_states_put_back_give_the_same_draws():
    """Every generator an epoch draws from, the global ones included (dropout draws from torch's)."""
    generators = {"augment": torch.Generator().manual_seed(1)}

    def draws():
        return (torch.rand(3, generator=generators["augment"]).tolist(), torch.rand(3).tolist(),
                np.random.rand(3).tolist(), random.random())

    saved = random_states(generators, CPU)
    first = draws()
    restore_random_states(saved, generators, CPU)
    assert draws() == first
