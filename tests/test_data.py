"""Loading real MNIST offline, every kind of broken file, and the notebook's data steps."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
import pytest

from mnist_core import data
from mnist_core.data import (
    DatasetError,
    categorize,
    flatten,
    load_mnist,
    normalize,
    read_idx,
    read_mnist,
)

pytestmark = pytest.mark.unit

# Facts about the real files, from the data's provenance notes (data/mnist/README.md).
FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_VALID_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TRAIN_MEAN = 33.318421
RAW_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def test_load_mnist_matches_keras_layout(mnist):
    (x_train, y_train), (x_valid, y_valid) = load_mnist()
    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_valid.shape == (10000, 28, 28) and x_valid.dtype == np.uint8
    assert y_valid.shape == (10000,) and y_valid.dtype == np.uint8
    assert x_train.min() == 0 and x_train.max() == 255
    assert y_train[:10].tolist() == FIRST_TRAIN_LABELS
    assert y_valid[:10].tolist() == FIRST_VALID_LABELS
    assert np.bincount(y_train).tolist() == TRAIN_CLASS_COUNTS
    assert x_train.mean() == pytest.approx(TRAIN_MEAN, abs=1e-6)
    assert mnist.source == str(data.BUNDLED_DIR)


def test_bundled_files_decompress_to_the_published_raw_files():
    for name, digest in RAW_SHA256.items():
        raw = gzip.decompress((data.BUNDLED_DIR / f"{name}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == digest


def _write_raw_copy(mnist, folder):
    """The real dataset as raw (uncompressed) IDX files, built from the bundled ones."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (n for pair in data.SPLITS.values() for n in pair):
        (folder / name).write_bytes(gzip.decompress((data.BUNDLED_DIR / f"{name}.gz").read_bytes()))
    return folder


def test_raw_idx_folder_from_environment(mnist, tmp_path, monkeypatch):
    folder = _write_raw_copy(mnist, tmp_path / "raw")
    monkeypatch.setenv("MNIST_DATA", str(folder))
    loaded = read_mnist()
    assert loaded.source == str(folder)
    np.testing.assert_array_equal(loaded.x_train, mnist.x_train)
    np.testing.assert_array_equal(loaded.y_valid, mnist.y_valid)


def test_keras_npz_file_and_argument_beats_environment(mnist, tmp_path, monkeypatch):
    npz = tmp_path / "mnist.npz"
    np.savez_compressed(npz, x_train=mnist.x_train, y_train=mnist.y_train,
                        x_test=mnist.x_valid, y_test=mnist.y_valid)
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "does-not-exist"))
    loaded = read_mnist(npz)
    assert loaded.source == str(npz)
    np.testing.assert_array_equal(loaded.x_valid, mnist.x_valid)
    # A folder holding a Keras mnist.npz works too.
    assert read_mnist(tmp_path).source == str(npz)


def test_falls_back_to_the_keras_cache(mnist, tmp_path, monkeypatch):
    cache = tmp_path / ".keras" / "datasets" / "mnist.npz"
    cache.parent.mkdir(parents=True)
    np.savez(cache, x_train=mnist.x_train[:100], y_train=mnist.y_train[:100],
             x_test=mnist.x_valid[:10], y_test=mnist.y_valid[:10])
    monkeypatch.delenv("MNIST_DATA", raising=False)
    monkeypatch.setattr(data, "BUNDLED_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(data, "KERAS_CACHE", cache)
    loaded = read_mnist()
    assert loaded.source == str(cache) and loaded.x_train.shape == (100, 28, 28)


def test_missing_everywhere_lists_the_places_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_DATA", raising=False)
    monkeypatch.setattr(data, "BUNDLED_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "no-cache.npz")
    with pytest.raises(DatasetError, match="not found") as err:
        read_mnist()
    assert "no-bundle" in str(err.value) and "no-cache.npz" in str(err.value)


@pytest.fixture()
def broken(tmp_path):
    """A copy of the bundled folder to break one file of (checksums dropped unless needed)."""
    folder = tmp_path / "mnist"
    shutil.copytree(data.BUNDLED_DIR, folder)
    (folder / "SHA256SUMS").unlink()
    return folder


def test_missing_file(broken):
    (broken / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.*missing"):
        read_mnist(broken)


def test_truncated_file(broken):
    path = broken / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:1200]))
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: truncated, expected 60008"):
        read_mnist(broken)


def set_byte(path, offset: int, value: int) -> None:
    """Change one byte of the uncompressed content of a .gz file."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[offset] = value
    path.write_bytes(gzip.compress(bytes(raw)))


def write_labels(path, labels: np.ndarray) -> None:
    """A well-formed gzipped IDX labels file holding `labels`."""
    header = (0x801).to_bytes(4, "big") + len(labels).to_bytes(4, "big")
    path.write_bytes(gzip.compress(header + labels.tobytes()))


def test_wrong_magic(broken):
    set_byte(broken / "t10k-images-idx3-ubyte.gz", 3, 0x01)
    with pytest.raises(DatasetError, match=r"t10k-images.*wrong magic number 0x00000801"):
        read_mnist(broken)


def test_bad_gzip(broken):
    path = broken / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage that is not deflate data")
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: not a valid gzip"):
        read_mnist(broken)


def test_count_mismatch(broken, mnist):
    write_labels(broken / "t10k-labels-idx1-ubyte.gz", mnist.y_valid[:9999])
    with pytest.raises(DatasetError, match=r"10000 images but .* 9999 labels: count mismatch"):
        read_mnist(broken)


def test_label_out_of_range(broken, mnist):
    labels = mnist.y_valid.copy()
    labels[42] = 11
    write_labels(broken / "t10k-labels-idx1-ubyte.gz", labels)
    with pytest.raises(DatasetError, match=r"label out of range, label 11 at index 42"):
        read_mnist(broken)


def test_checksum_mismatch_of_bundled_style_folder(tmp_path):
    folder = tmp_path / "mnist"
    shutil.copytree(data.BUNDLED_DIR, folder)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    old = gzip.decompress(path.read_bytes())[100]
    set_byte(path, 100, (old + 1) % 10)  # still a valid label: only the checksum can tell
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        read_mnist(folder)


def test_npz_without_the_four_arrays(tmp_path):
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(DatasetError, match=r"mnist.npz: not a Keras mnist.npz, missing .*x_test"):
        read_mnist(npz)


def test_npz_that_is_not_an_npz(tmp_path):
    npz = tmp_path / "mnist.npz"
    npz.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match=r"mnist.npz: cannot read"):
        read_mnist(npz)


def test_read_idx_header_shorter_than_its_dimensions(tmp_path):
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes((0x803).to_bytes(4, "big") + (5).to_bytes(4, "big"))
    with pytest.raises(DatasetError, match="truncated, header needs 16 bytes"):
        read_idx(path, data.IMAGES_MAGIC)


def test_flatten_is_the_notebooks_reshape(mnist):
    x_train = flatten(mnist.x_train)
    assert x_train.shape == (60000, 784)
    np.testing.assert_array_equal(x_train, mnist.x_train.reshape(60000, 784))
    np.testing.assert_array_equal(x_train[0].reshape(28, 28), mnist.x_train[0])


def test_normalize_maps_to_unit_interval(mnist):
    x_valid = normalize(flatten(mnist.x_valid))
    assert x_valid.dtype == np.float32
    assert x_valid.min() == 0.0 and x_valid.max() == 1.0
    np.testing.assert_allclose(x_valid * 255, flatten(mnist.x_valid), atol=1e-4)


def test_categorize_matches_keras_to_categorical(mnist):
    import keras

    one_hot = categorize(mnist.y_train)
    assert one_hot.shape == (60000, 10)
    np.testing.assert_array_equal(one_hot.sum(axis=1), 1.0)
    np.testing.assert_array_equal(one_hot.argmax(axis=1), mnist.y_train)
    np.testing.assert_array_equal(one_hot, keras.utils.to_categorical(mnist.y_train, 10))
