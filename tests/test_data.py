"""Datasets: real MNIST files, pMNIST permutation, CIFAR-10 in the real pickle format, noise."""

import gzip
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from arnn.data import DataError, EpochSampler, build_task, pixel_permutation
from arnn.data.idx import read_idx
from arnn.errors import ConfigError
from arnn.storage import Folder
from arnn.validation import validate
from tests.fixtures import compose_cfg, run_config

CPU = torch.device("cpu")
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _task(data_dir, *overrides):
    """The task; without a validation split unless the overrides ask for one (the readers'
    tests count the files' own splits)."""
    val = () if any("val_size" in o for o in overrides) else ("dataset.val_size=0",)
    cfg = compose_cfg(*overrides, *val)
    return build_task(cfg.dataset, data_dir, CPU)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return _task(mnist_dir, "dataset=mnist")


@pytest.mark.slow
def test_real_mnist_counts_labels_and_known_images(mnist, mnist_dir):
    assert (mnist.num_train, mnist.num_test) == (60000, 10000)
    assert torch.bincount(mnist.train_y).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(mnist.splits["test"][1]).tolist() == MNIST_TEST_COUNTS
    assert mnist.train_y[0].item() == 5 and mnist.splits["test"][1][0].item() == 7
    x, y = mnist.train_batch(torch.tensor([0, 1]))
    assert x.shape == (2, 784, 1) and x.dtype == torch.float32
    assert x.min() == 0.0 and x.max() == 1.0
    # scan-line order: step 28*r + c is pixel (r, c) of the image file
    raw = read_idx(mnist_dir / "train-images-idx3-ubyte.gz", 3)
    np.testing.assert_allclose(x[0, :, 0].numpy(), raw[0].reshape(-1) / 255.0, rtol=1e-6)


@pytest.mark.slow
def test_mnist_standardize_option(mnist_dir):
    task = _task(mnist_dir, "dataset=mnist", "dataset.standardize=true", "dataset.train_limit=10")
    assert task.mean[0] == pytest.approx(0.1307, abs=1e-3)
    assert task.std[0] == pytest.approx(0.3081, abs=1e-3)
    x, _ = task.train_batch(torch.arange(10))
    assert x.min() < -0.4 and x.max() > 2.5


@pytest.mark.slow
def test_torchvision_layout_and_plain_files(tmp_path, mnist_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in mnist_dir.glob("*-ubyte.gz"):
        if f.name.startswith("t10k"):
            (raw / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))  # plain
        else:
            shutil.copy(f, raw / f.name)
    task = _task(tmp_path, "dataset=mnist", "dataset.download=false", "dataset.test_limit=5")
    assert (task.num_train, task.num_test) == (60000, 5)
    assert task.splits["test"][1].tolist() == [7, 2, 1, 0, 4]


@pytest.mark.slow
def test_limits_keep_the_first_examples(mnist, mnist_dir):
    small = _task(mnist_dir, "dataset=mnist", "dataset.train_limit=100", "dataset.test_limit=30")
    assert (small.num_train, small.num_test) == (100, 30)
    assert torch.equal(small.train_x, mnist.train_x[:100])
    assert torch.equal(small.splits["test"][1], mnist.splits["test"][1][:30])


def _copy_mnist(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.glob("*-ubyte.gz"):
        shutil.copy(f, dst / f.name)
    return dst


@pytest.mark.slow
def test_truncated_or_malformed_idx_file_names_the_file(tmp_path, mnist_dir):
    folder = _copy_mnist(mnist_dir, tmp_path / "m")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    data = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*truncated"):
        _task(folder, "dataset=mnist", "dataset.download=false")
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + data[4:]))  # images' magic
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*magic"):
        _task(folder, "dataset=mnist", "dataset.download=false")


@pytest.mark.slow
def test_pmnist_permutation(mnist_dir, mnist, tmp_path):
    perm = pixel_permutation(784, 0)
    assert sorted(perm.tolist()) == list(range(784))  # a bijection of all 784 positions
    assert torch.equal(perm, pixel_permutation(784, 0))  # fixed by its seed
    assert not torch.equal(perm, pixel_permutation(784, 1))
    task = _task(mnist_dir, "dataset=pmnist", "dataset.test_limit=50")
    assert torch.equal(task.permutation, perm)
    x_train, _ = task.train_batch(torch.arange(3))
    plain, _ = mnist.train_batch(torch.arange(3))
    assert torch.equal(x_train, plain[:, perm])  # same permutation for every image
    unpermuted = torch.empty_like(x_train)
    unpermuted[:, perm] = x_train
    assert torch.equal(unpermuted, plain)
    x_test, _ = next(task.eval_batches(50))
    plain_test, _ = next(mnist.eval_batches(50))
    assert torch.equal(x_test, plain_test[:, perm])  # same permutation on the test split
    other = _task(mnist_dir, "dataset=pmnist", "dataset.permutation_seed=1", "dataset.test_limit=1")
    assert not torch.equal(other.permutation, perm)
    with Folder(tmp_path) as folder:
        task.save_artifacts(folder)
    assert json.loads((tmp_path / "permutation.json").read_text()) == perm.tolist()


def test_pixel_cifar10_sequences(cifar_root):
    task = _task(cifar_root, "dataset=cifar10", "dataset.download=false")
    assert (task.num_train, task.num_test) == (20, 4)
    x, y = task.train_batch(torch.arange(20))
    assert x.shape == (20, 1024, 3)
    # per-channel standardisation from the training split
    torch.testing.assert_close(x.mean(dim=(0, 1)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 1), unbiased=False), torch.ones(3), atol=1e-4, rtol=0)
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    raw = first[b"data"][0].reshape(3, 32, 32)  # channel, row, column
    step = 32 * 5 + 7  # pixel (row 5, column 7) in scan-line order
    expected = (raw[:, 5, 7] / 255.0 - task.mean) / task.std
    np.testing.assert_allclose(x[0, step].numpy(), expected, rtol=1e-5)
    assert y[0].item() == first[b"labels"][0]


def test_noise_padded_cifar10(cifar_root):
    task = _task(cifar_root, "dataset=noise_cifar10", "dataset.download=false")
    pixel = _task(cifar_root, "dataset=cifar10", "dataset.download=false")
    task.seed(0)
    idx = torch.arange(20)
    x1, _ = task.train_batch(idx)
    x2, _ = task.train_batch(idx)
    assert x1.shape == (20, 1000, 96)
    # steps 1..32 are the image rows: 32 pixels x 3 channels, standardised like pixel CIFAR
    rows = pixel.train_batch(idx)[0].reshape(20, 32, 96)
    torch.testing.assert_close(x1[:, :32], rows)
    assert torch.equal(x1[:, :32], x2[:, :32])
    pad = x1[:, 32:]
    assert abs(pad.mean().item()) < 0.01 and abs(pad.var().item() - 1) < 0.01
    assert not torch.allclose(pad, x2[:, 32:])  # fresh noise each time an example is used
    assert not torch.allclose(pad[0], pad[1])  # independent across examples
    t1 = torch.cat([x for x, _ in task.eval_batches(3)])
    t2 = torch.cat([x for x, _ in task.eval_batches(3)])
    assert t1.shape == (4, 1000, 96) and torch.equal(t1, t2)  # repeatable evaluation


def _check_noise_padded(task, rows, steps, image_rows, width):
    """Steps 1..image_rows are the standardised image rows; the rest N(0, 1) noise, fresh for
    every training example at every use, the same at every evaluation."""
    task.seed(0)
    idx = torch.arange(len(rows))
    x1, _ = task.train_batch(idx)
    x2, _ = task.train_batch(idx)
    assert x1.shape == (len(rows), steps, width)
    torch.testing.assert_close(x1[:, :image_rows], rows)
    assert torch.equal(x1[:, :image_rows], x2[:, :image_rows])
    pad = x1[:, image_rows:]
    assert abs(pad.mean().item()) < 0.02 and abs(pad.var().item() - 1) < 0.02
    assert not torch.allclose(pad, x2[:, image_rows:])  # fresh noise each time
    assert not torch.allclose(pad[0], pad[1])  # independent across examples
    t1 = torch.cat([x for x, _ in task.eval_batches(100)])
    t2 = torch.cat([x for x, _ in task.eval_batches(100)])
    assert torch.equal(t1, t2) and not torch.allclose(t1[0, image_rows:], t1[1, image_rows:])


def test_noise_padded_digits():
    """noise_digits: the digits' 8 rows of 8 pixels, standardised with the training split's
    pixel mean and std, then noise up to seq_len."""
    from sklearn.datasets import load_digits

    task = _task("unused", "dataset=noise_digits", "dataset.seq_len=120")
    pixels = task.train_x.double() / 16  # (N, 8, 8): the training split's images
    raw = load_digits().images
    assert any(np.array_equal(raw[i], task.train_x[0].numpy()) for i in range(len(raw)))
    mean, std = pixels.mean().item(), pixels.std(unbiased=False).item()
    rows = ((pixels[:64] - mean) / std).float()
    _check_noise_padded(task, rows, 120, 8, 8)
    assert task.num_test == 450  # the digits' split (test_fraction 0.25)
    short = _task("unused", "dataset=noise_digits", "dataset.seq_len=8")
    assert short.seq_len == 8 and short.train_batch(torch.arange(2))[0].shape == (2, 8, 8)


def test_noise_padded_sequence_shorter_than_the_image_is_refused():
    from arnn.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.seq_len=5 is invalid: noise_digits needs "
                                          "at least its 8 image rows"):
        _task("unused", "dataset=noise_digits", "dataset.seq_len=5")


@pytest.mark.slow
def test_noise_padded_mnist(mnist_dir):
    """noise_mnist: MNIST's 28 rows of 28 pixels, standardised, then noise up to T = 1000."""
    task = _task(mnist_dir, "dataset=noise_mnist", "dataset.test_limit=300")
    pixels = task.train_x.double() / 255
    mean, std = pixels.mean().item(), pixels.std(unbiased=False).item()
    assert abs(mean - 0.1307) < 1e-3 and abs(std - 0.3081) < 1e-3  # MNIST's known statistics
    rows = ((pixels[:64] - mean) / std).float()
    _check_noise_padded(task, rows, 1000, 28, 28)


def test_noise_seed_chooses_the_test_noise(cifar_root):
    def test_inputs(seed):
        task = _task(cifar_root, "dataset=noise_cifar10", "dataset.download=false",
                     f"dataset.noise_seed={seed}")
        return torch.cat([x for x, _ in task.eval_batches(4)])

    a, b, again = test_inputs(0), test_inputs(1), test_inputs(0)
    assert torch.equal(a, again)
    assert torch.equal(a[:, :32], b[:, :32])  # the images are the same
    assert not torch.allclose(a[:, 32:], b[:, 32:])  # the noise is not


def test_noise_generator_state_round_trips(cifar_root):
    task = _task(cifar_root, "dataset=noise_cifar10", "dataset.download=false")
    state = task.state_dict()
    a, _ = task.train_batch(torch.arange(2))
    task.load_state_dict(state)
    b, _ = task.train_batch(torch.arange(2))
    assert torch.equal(a, b)


def test_corrupt_cifar_batch_names_the_file(cifar_root):
    bad = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3"):
        _task(cifar_root, "dataset=cifar10", "dataset.download=false")


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_missing_files_offline_message(tmp_path, monkeypatch, dataset):
    import torchvision

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_network)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_network)
    with pytest.raises(DataError) as info:
        _task(tmp_path, f"dataset={dataset}")
    message = str(info.value)
    assert "\n" not in message and "Download failed" in message and "data_dir=" in message
    if dataset == "mnist":
        assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message
        assert str(tmp_path) in message
    else:
        assert "data_batch_1" in message and "test_batch" in message
        assert str(tmp_path / "cifar-10-batches-py") in message
    with pytest.raises(DataError, match="dataset.download=false"):
        _task(tmp_path, f"dataset={dataset}", "dataset.download=false")


def test_digits_split_is_fixed_and_stratified():
    a = _task("unused", "dataset=digits")
    b = _task("unused", "dataset=digits")
    assert torch.equal(a.splits["test"][0], b.splits["test"][0])
    assert torch.equal(a.train_y, b.train_y)
    assert a.num_train + a.num_test == 1797
    x, _ = a.train_batch(torch.arange(a.num_train))
    assert x.shape == (a.num_train, 64, 1) and x.min() == 0 and x.max() == 1
    counts = torch.bincount(a.splits["test"][1])
    assert counts.min() >= 40  # every class is represented in the test split


def test_split_seed_chooses_the_digits_split():
    a = _task("unused", "dataset=digits", "dataset.split_seed=0")
    b = _task("unused", "dataset=digits", "dataset.split_seed=1")
    assert (a.num_train, a.num_test) == (b.num_train, b.num_test)
    assert not torch.equal(a.splits["test"][0], b.splits["test"][0])
    # The same 1797 images, dealt differently: the union of the splits is unchanged.
    def images(task):
        return sorted(map(bytes, torch.cat([task.train_x, task.splits["test"][0]]).numpy()))

    assert images(a) == images(b)


@pytest.mark.slow
def test_fashion_mnist_reads_the_same_format(tmp_path, mnist_dir):
    raw = tmp_path / "FashionMNIST" / "raw"  # torchvision's layout for Fashion-MNIST
    raw.mkdir(parents=True)
    for f in mnist_dir.glob("*-ubyte.gz"):
        shutil.copy(f, raw / f.name)
    task = _task(tmp_path, "dataset=fashion_mnist", f"dataset.path={tmp_path}",
                 "dataset.download=false", "dataset.test_limit=3")
    assert (task.num_train, task.num_test, task.seq_len) == (60000, 3, 784)
    system = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
    if system.is_dir():
        real = _task("unused-data-dir", "dataset=fashion_mnist", "dataset.download=false")
        assert (real.num_train, real.num_test) == (60000, 10000)
        assert torch.bincount(real.splits["test"][1]).tolist() == [1000] * 10


def test_epoch_sampler_visits_every_example_once_per_epoch():
    sampler = EpochSampler(10, 3, seed=0, device=CPU)
    epoch = torch.cat([sampler.next() for _ in range(3)])
    assert len(set(epoch.tolist())) == 9  # no repeats within an epoch; remainder dropped
    next_epoch = torch.cat([sampler.next() for _ in range(3)])
    assert len(set(next_epoch.tolist())) == 9 and not torch.equal(epoch, next_epoch)
    state = sampler.state_dict()
    after = [sampler.next() for _ in range(4)]
    sampler.load_state_dict(state)
    assert all(torch.equal(a, sampler.next()) for a in after)


@pytest.mark.slow
def test_short_training_run_on_real_mnist(tmp_path, mnist_dir):
    cfg = compose_cfg(
        "dataset=mnist", f"data_dir={mnist_dir}", "model.hidden_size=16", "train.steps=3",
        "train.batch_size=8", "dataset.train_limit=64", "dataset.test_limit=50",
        "train.eval_every=3",
    )
    best = run_config(cfg, tmp_path)
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["status"] == "completed" and result["dataset"] == "mnist"
    assert result["steps"] == 3 and result["best_val_accuracy"] == best
    assert (result["num_val"], result["config"]["dataset"]["val_size"]) == (5000, 5000)
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert (result["train_limit"], result["test_limit"]) == (64, 50)
    assert (result["num_train"], result["num_test"]) == (64, 50)


# --- the validation split ---------------------------------------------------------------------

@pytest.mark.slow
def test_mnist_validation_split_is_stratified_fixed_and_apart_from_training(mnist_dir, mnist):
    """5,000 of the 60,000 training images, each class in proportion, drawn from val_seed
    alone: not from `seed`, so every job of a sweep holds out the same images."""
    task = _task(mnist_dir, "dataset=mnist", "dataset.val_size=5000")
    val_x, val_y, _ = task.splits["val"]
    assert (task.num_train, task.num_val, task.num_test) == (55000, 5000, 10000)
    expected = np.array(MNIST_TRAIN_COUNTS) * 5000 / 60000
    assert np.abs(torch.bincount(val_y).numpy() - expected).max() <= 1
    every = {bytes(x) for x in mnist.train_x.numpy()}  # the whole training split, no split
    parts = [{bytes(x) for x in t.numpy()} for t in (task.train_x, val_x)]
    assert parts[0] | parts[1] <= every and not parts[0] & parts[1]
    assert len(parts[0]) + len(parts[1]) == len(every)  # MNIST images are distinct
    other_seed = _task(mnist_dir, "dataset=mnist", "dataset.val_size=5000", "seed=7")
    assert torch.equal(other_seed.splits["val"][1], val_y)
    other_split = _task(mnist_dir, "dataset=mnist", "dataset.val_size=5000",
                        "dataset.val_seed=1")
    assert not torch.equal(other_split.splits["val"][0], val_x)
    # the standardisation sees the training part only
    std = _task(mnist_dir, "dataset=mnist", "dataset.val_size=5000", "dataset.standardize=true")
    assert std.mean[0] == pytest.approx(task.train_x.double().mean().item() / 255, rel=1e-9)


def test_digits_validation_fraction_and_sizes():
    task = _task("data", "dataset=digits", "dataset.val_size=0.1")
    assert (task.num_train, task.num_val, task.num_test) == (1212, 135, 450)
    assert torch.bincount(task.splits["val"][1]).min() >= 13  # every class, ~13.5 each
    counted = _task("data", "dataset=digits", "dataset.val_size=300")
    assert (counted.num_train, counted.num_val) == (1047, 300)
    with pytest.raises(ConfigError, match=r"^dataset.val_size=1340 is invalid: the training "
                                          r"split has 1347 examples of 10 classes"):
        _task("data", "dataset=digits", "dataset.val_size=1340")


@pytest.mark.parametrize("bad", ["-1", "1.0", "1.5", "true", "abc"])
def test_bad_validation_sizes_are_one_line(bad):
    with pytest.raises(ConfigError, match=r"^dataset.val_size=.* is invalid: must be a count"):
        validate(compose_cfg(f"dataset.val_size={bad}"))


def test_validation_noise_is_repeatable_and_not_the_test_noise():
    task = _task("data", "dataset=noise_digits", "dataset.val_size=0.1")
    first = torch.cat([x for x, _ in task.eval_batches(50, "val")])
    again = torch.cat([x for x, _ in task.eval_batches(50, "val")])
    test = torch.cat([x for x, _ in task.eval_batches(50, "test")])
    assert torch.equal(first, again)
    assert not torch.equal(first[:, 8:], test[: len(first), 8:])  # the padding after the rows


def test_noise_padded_digits_standardise_with_the_training_part_of_a_validation_split():
    """With the default validation split (10%), the pixel statistics are the training part's:
    computed here from scikit-learn's digits split by hand (75/25 by split_seed 0, then 135
    validation images by val_seed 0, both stratified), not from the task."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x_train, _, y_train, _ = train_test_split(digits.images, digits.target, test_size=0.25,
                                              random_state=0, stratify=digits.target)
    keep, held = train_test_split(np.arange(len(y_train)), test_size=135, random_state=0,
                                  stratify=y_train)
    part = x_train[np.sort(keep)] / 16
    mean, std = part.mean(), part.std()
    assert abs(mean - (x_train / 16).mean()) > 1e-6  # the held-out images would move it
    task = build_task(compose_cfg("dataset=noise_digits").dataset, "unused", CPU)
    assert (task.num_train, task.num_val) == (len(keep), 135)
    np.testing.assert_allclose(task.mean, [mean] * 8, rtol=1e-12)
    np.testing.assert_allclose(task.std, [std] * 8, rtol=1e-12)
    rows = torch.tensor((part[:4] - mean) / std, dtype=torch.float32)
    torch.testing.assert_close(task.train_batch(torch.arange(4))[0][:, :8], rows)
    val_images = task.splits["val"][0].numpy()
    np.testing.assert_array_equal(val_images, x_train[np.sort(held)].astype(np.uint8))


def test_a_failed_download_leaves_no_empty_folder(tmp_path):
    """torchvision makes data/MNIST/raw before it fetches: when the fetch fails, the folders
    it made are removed again (a folder that existed, or holds a partial file, stays)."""
    from arnn.data.files import DataError, download_or_explain

    root, kept = tmp_path / "data", tmp_path / "kept"
    kept.mkdir()
    folders = [root, root / "MNIST", root / "MNIST" / "raw"]

    def fetch():
        folders[-1].mkdir(parents=True)
        raise OSError("Name or service not known")

    with pytest.raises(DataError, match="Download failed: OSError: Name or service not known"):
        download_or_explain(fetch, "mnist", ["a"], str(root), True, [kept, *folders])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
