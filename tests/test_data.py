"""Loading real MNIST offline, every kind of broken file, and the notebook's data steps."""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from mnist_core import data, idx
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


# Every kind of bad MNIST_DATA: a DatasetError that names the file and the fault, never another
# exception (the pages show its message; anything else would be a traceback or a dead worker).


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def small_arrays(mnist, train: int = 20, valid: int = 10) -> dict[str, np.ndarray]:
    """A valid Keras-layout dataset, small: the four arrays under their npz keys."""
    return {"x_train": mnist.x_train[:train], "y_train": mnist.y_train[:train],
            "x_test": mnist.x_valid[:valid], "y_test": mnist.y_valid[:valid]}


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` (uint8) as an IDX file: magic 0x08 and ndim, then each dimension, then the data."""
    header = (0x800 + array.ndim).to_bytes(4, "big")
    return header + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes()


# npz key -> IDX file name: both list train images, train labels, test images, test labels.
IDX_NAMES = dict(zip(data.NPZ_KEYS, [name for pair in data.SPLITS.values() for name in pair], strict=True))


def write_idx_folder(folder, arrays: dict[str, np.ndarray]):
    """The four raw IDX files of `arrays` (npz keys) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        (folder / name).write_bytes(idx_bytes(arrays[key]))
    return folder


def check_mnist(loaded: data.Mnist) -> None:
    """What every Mnist read_mnist returns must be: never partial, never out of range."""
    for x, y in ((loaded.x_train, loaded.y_train), (loaded.x_valid, loaded.y_valid)):
        assert x.dtype == np.uint8 and y.dtype == np.uint8
        assert x.ndim == 3 and x.shape[1:] == (28, 28) and y.shape == (x.shape[0],) and len(y) >= 1
        assert int(y.max()) < 10


def test_small_valid_sources_are_read(mnist, tmp_path):
    arrays = small_arrays(mnist)
    check_mnist(read_mnist(save_npz(tmp_path / "mnist.npz", **arrays)))
    loaded = read_mnist(write_idx_folder(tmp_path / "idx", arrays))
    check_mnist(loaded)
    np.testing.assert_array_equal(loaded.x_valid, arrays["x_test"])


def test_npy_file_is_not_an_npz(mnist, tmp_path):
    path = tmp_path / "x_train.npy"
    np.save(path, mnist.x_train[:5])
    with pytest.raises(DatasetError, match=r"x_train.npy: a single .npy array, not a Keras mnist.npz"):
        read_mnist(path)


def test_npz_with_other_names_or_none(mnist, tmp_path):
    arrays = small_arrays(mnist)
    arrays["x_valid"] = arrays.pop("x_test")
    with pytest.raises(DatasetError, match=r"missing arrays x_test \(has x_train, y_train, y_test, x_valid"):
        read_mnist(save_npz(tmp_path / "renamed.npz", **arrays))
    with pytest.raises(DatasetError, match=r"empty.npz: not a Keras mnist.npz, .*\(has none\)"):
        read_mnist(save_npz(tmp_path / "empty.npz"))


@pytest.mark.parametrize("key", ["x_train", "y_train", "x_test", "y_test"])
def test_npz_with_no_images(mnist, tmp_path, key):
    arrays = small_arrays(mnist)
    arrays[key] = arrays[key][:0]
    with pytest.raises(DatasetError, match=rf"mnist.npz:{key}: empty, no (images|labels)"):
        read_mnist(save_npz(tmp_path / "mnist.npz", **arrays))


@pytest.mark.parametrize("key, dtype", [
    ("x_train", np.float32), ("y_train", np.int64), ("x_test", np.uint16), ("y_test", np.int8),
    ("x_train", np.bool_), ("y_train", "U1"), ("x_test", ">u2"),
])
def test_npz_with_a_wrong_dtype(mnist, tmp_path, key, dtype):
    arrays = small_arrays(mnist)
    arrays[key] = arrays[key].astype(dtype)
    with pytest.raises(DatasetError, match=rf"mnist.npz: {key} has dtype .*, expected uint8"):
        read_mnist(save_npz(tmp_path / "mnist.npz", **arrays))


@pytest.mark.parametrize("key, reshape, fault", [
    ("x_train", lambda x: x.reshape(len(x), 784), r"images have shape \(20, 784\), expected \(N, 28, 28\)"),
    ("x_test", lambda x: x[..., None], r"images have shape \(10, 28, 28, 1\)"),
    ("x_train", lambda x: np.zeros((20, 32, 32), np.uint8), r"images have shape \(20, 32, 32\)"),
    ("x_test", lambda x: x[0, 0, 0], r"images have shape \(\)"),
    ("y_train", lambda y: y[:, None], r"labels have shape \(20, 1\), expected \(N,\)"),
    ("y_test", lambda y: y[0], r"labels have shape \(\), expected \(N,\)"),
])
def test_npz_with_a_wrong_shape(mnist, tmp_path, key, reshape, fault):
    arrays = small_arrays(mnist)
    arrays[key] = np.asarray(reshape(arrays[key]))
    with pytest.raises(DatasetError, match=rf"mnist.npz:{key}: {fault}"):
        read_mnist(save_npz(tmp_path / "mnist.npz", **arrays))


def test_npz_with_object_arrays_is_refused_without_unpickling(mnist, tmp_path):
    arrays = small_arrays(mnist)
    arrays["y_train"] = np.array(list(range(20)), dtype=object)  # saved pickled
    with pytest.raises(DatasetError, match=r"mnist.npz: y_train has dtype object, expected uint8"):
        read_mnist(save_npz(tmp_path / "mnist.npz", **arrays))


def test_npz_member_that_is_not_a_npy_array(mnist, tmp_path):
    path = save_npz(tmp_path / "mnist.npz", **small_arrays(mnist))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("x_test", b"just text")  # listed after x_test.npy, so read as x_test
    with pytest.raises(DatasetError, match=r"mnist.npz: x_test is not a .npy array"):
        read_mnist(path)


def test_npz_header_claiming_a_trillion_images_is_refused_before_reading(tmp_path):
    path = tmp_path / "mnist.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**12, 28, 28)})
    with zipfile.ZipFile(path, "w") as archive:
        for key in data.NPZ_KEYS:
            archive.writestr(f"{key}.npy", header.getvalue() + b"\0" * 100)
    with pytest.raises(DatasetError, match=r"x_train: 1000000000000 images, more than the 1000000"):
        read_mnist(path)


def test_npz_whose_data_is_shorter_than_its_header(mnist, tmp_path):
    arrays = small_arrays(mnist)
    path = save_npz(tmp_path / "mnist.npz", **arrays)
    raw = zipfile.ZipFile(path).read("y_test.npy")
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{key}.npy", raw[:-3] if key == "y_test" else buffer.getvalue())
    with pytest.raises(DatasetError, match=r"mnist.npz: cannot read as .npz \(ValueError: EOF"):
        read_mnist(path)


def test_npz_fortran_order_arrays_are_read(mnist, tmp_path):
    arrays = {key: np.asfortranarray(array) for key, array in small_arrays(mnist).items()}
    loaded = read_mnist(save_npz(tmp_path / "mnist.npz", **arrays))
    np.testing.assert_array_equal(loaded.x_train, mnist.x_train[:20])


def test_npz_count_mismatch_and_label_out_of_range(mnist, tmp_path):
    arrays = small_arrays(mnist)
    arrays["y_test"] = arrays["y_test"][:9]
    with pytest.raises(DatasetError, match=r"x_test has 10 images but .*y_test has 9 labels: count mismatch"):
        read_mnist(save_npz(tmp_path / "mnist.npz", **arrays))
    arrays = small_arrays(mnist)
    arrays["y_train"] = arrays["y_train"].copy()
    arrays["y_train"][3] = 10
    with pytest.raises(DatasetError, match=r"mnist.npz:y_train: label out of range, label 10 at index 3"):
        read_mnist(save_npz(tmp_path / "mnist.npz", **arrays))


@pytest.mark.parametrize("content", [b"", b"x_train,y_train\n1,2\n", "é€".encode(), b"\0" * 5000,
                                     b"\x1f\x8b\x08\x00" + b"\0" * 30, b"PK\x03\x04" + b"\0" * 40])
def test_text_empty_or_random_file(tmp_path, content):
    path = tmp_path / "mnist.txt"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=r"mnist.txt: cannot read as .npz \(BadZipFile"):
        read_mnist(path)


def test_an_empty_zip_file(tmp_path):
    path = tmp_path / "mnist.zip"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(DatasetError, match=r"mnist.zip: not a Keras mnist.npz, missing .* \(has none\)"):
        read_mnist(path)


def test_folder_with_junk_and_no_mnist(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (folder / "train-images-idx3-ubyte.zip").write_bytes(b"PK")
    with pytest.raises(DatasetError, match=r"not found.*junk \(a folder without IDX files or mnist.npz\)"):
        read_mnist(folder)


def test_folder_with_junk_idx_files(mnist, tmp_path):
    folder = write_idx_folder(tmp_path / "idx", small_arrays(mnist))
    (folder / "t10k-images-idx3-ubyte").write_text("not an IDX file at all")
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: wrong magic number 0x6e6f7420"):
        read_mnist(folder)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: truncated, only 0 bytes"):
        read_mnist(folder)


@pytest.mark.parametrize("kept", [["x_train"], ["x_train", "y_train"], ["x_train", "y_train", "y_test"]])
def test_folder_with_partial_idx_files(mnist, tmp_path, kept):
    folder = write_idx_folder(tmp_path / "idx", small_arrays(mnist))
    for path in folder.iterdir():
        if path.name not in {IDX_NAMES[key] for key in kept}:
            path.unlink()
    with pytest.raises(DatasetError, match=r"-ubyte\[\.gz\]: missing from .*idx"):
        read_mnist(folder)


def test_idx_with_zero_images(mnist, tmp_path):
    arrays = small_arrays(mnist)
    arrays["x_train"], arrays["y_train"] = arrays["x_train"][:0], arrays["y_train"][:0]
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: empty, no images"):
        read_mnist(write_idx_folder(tmp_path / "idx", arrays))


def test_idx_images_of_another_size(tmp_path, mnist):
    arrays = small_arrays(mnist)
    arrays["x_test"] = np.zeros((10, 32, 32), np.uint8)
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte: images have shape \(10, 32, 32\)"):
        read_mnist(write_idx_folder(tmp_path / "idx", arrays))


def test_truncated_gz(broken):
    path = broken / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: not a valid gzip file \(compressed "
                                           r"data ends before the end-of-stream marker\)"):
        read_mnist(broken)


def test_empty_gz_and_gz_with_trailing_junk(broken):
    path = broken / "t10k-labels-idx1-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: not a valid gzip file \(empty\)"):
        read_mnist(broken)
    path.write_bytes(good + b"junk")
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: not a valid gzip file"):
        read_mnist(broken)


def test_gz_with_several_members_or_zero_padding_is_read_as_before(tmp_path, mnist):
    labels = mnist.y_valid[:10]
    raw = idx_bytes(labels)
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:7]) + gzip.compress(raw[7:]) + b"\0" * 16)
    np.testing.assert_array_equal(read_idx(path, data.LABELS_MAGIC), labels)


def test_gz_bomb_is_refused_without_inflating_it(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_IMAGES", 100)
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((10_000, 28, 28), np.uint8))))
    assert path.stat().st_size < 100 * 784  # small on disk: only inflating shows its size
    with pytest.raises(DatasetError, match=r"images-idx3-ubyte.gz: too large, over 78416 bytes decompressed"):
        read_idx(path, data.IMAGES_MAGIC)
    raw = tmp_path / "images-idx3-ubyte"
    raw.write_bytes(idx_bytes(np.zeros((1000, 28, 28), np.uint8)))
    with pytest.raises(DatasetError, match=r"idx3-ubyte: too large, 784016 bytes, more than 100 images"):
        read_idx(raw, data.IMAGES_MAGIC)


def test_idx_written_is_byte_for_byte_what_mnist_publishes_and_reads_back(tmp_path, mnist):
    # The export writes IDX with the module that reads MNIST: the validation split, written
    # again, is the published file itself.
    for name, array, magic in [("t10k-images-idx3-ubyte", mnist.x_valid, data.IMAGES_MAGIC),
                               ("t10k-labels-idx1-ubyte", mnist.y_valid, data.LABELS_MAGIC)]:
        published = gzip.decompress((data.BUNDLED_DIR / f"{name}.gz").read_bytes())
        assert idx.encode(array, magic) == published
        path = tmp_path / f"{name}.gz"
        path.write_bytes(idx.encode_gz(array, magic))
        np.testing.assert_array_equal(read_idx(path, magic), array)
    gz_mtime = idx.encode_gz(mnist.y_valid[:5], data.LABELS_MAGIC)[4:8]
    assert gz_mtime == b"\0\0\0\0"  # no timestamp: the same drawings export to the same bytes
    with pytest.raises(ValueError, match=r"magic 0x00000803 is for 3 dimensions, .* shape \(10,\)"):
        idx.encode(mnist.y_valid[:10], data.IMAGES_MAGIC)


def test_idx_header_with_huge_dimensions(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes((0x803).to_bytes(4, "big") + b"\xff" * 12 + b"\0" * 10)
    with pytest.raises(DatasetError, match=r"truncated, expected 79228162458924105385300197391 bytes"):
        read_idx(path, data.IMAGES_MAGIC)


def test_idx_too_long(tmp_path, mnist):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(idx_bytes(mnist.y_valid[:10]) + b"\0")
    with pytest.raises(DatasetError, match=r"idx1-ubyte: too long, expected 18 bytes for shape \(10,\)"):
        read_idx(path, data.LABELS_MAGIC)


def test_checksums_file_that_is_not_text(broken):
    (broken / "SHA256SUMS").write_bytes(b"\xff\xfe\0binary")
    with pytest.raises(DatasetError, match=r"SHA256SUMS: cannot read as a checksums file"):
        read_mnist(broken)
    (broken / "SHA256SUMS").write_bytes(b"0" * 100_000)
    with pytest.raises(DatasetError, match=r"SHA256SUMS: too large"):
        read_mnist(broken)


def test_a_file_that_is_a_directory(mnist, tmp_path):
    (tmp_path / "mnist.npz").mkdir()
    with pytest.raises(DatasetError, match=r"not found.*mnist.npz \(a folder without IDX files or mnist"):
        read_mnist(tmp_path / "mnist.npz")
    # An IDX name that is a folder is not the file: the folder is missing that file.
    folder = write_idx_folder(tmp_path / "idx", small_arrays(mnist))
    (folder / "train-labels-idx1-ubyte").unlink()
    (folder / "train-labels-idx1-ubyte").mkdir()
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\[\.gz\]: missing"):
        read_mnist(folder)


def test_read_idx_of_a_directory_or_a_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"nothing-idx1-ubyte: cannot be read"):
        read_idx(tmp_path / "nothing-idx1-ubyte", data.LABELS_MAGIC)
    with pytest.raises(DatasetError, match=r": cannot be read"):
        read_idx(tmp_path, data.LABELS_MAGIC)


@pytest.mark.parametrize("where", ["does-not-exist", "does-not-exist/mnist.npz", "~no-such-user-here/mnist"])
def test_a_path_that_does_not_exist(tmp_path, monkeypatch, where):
    source = where if where.startswith("~") else str(tmp_path / where)
    monkeypatch.setenv("MNIST_DATA", source)
    with pytest.raises(DatasetError, match=r"MNIST not found.*\(does not exist\)") as err:
        read_mnist()
    assert where.split("/")[-1] in str(err.value)


def test_special_files_and_too_long_names(tmp_path):
    with pytest.raises(DatasetError, match=r"/dev/null \(not a regular file or folder\)"):
        read_mnist("/dev/null")
    with pytest.raises(DatasetError, match=r"cannot be read \(File name too long\)"):
        read_mnist(tmp_path / ("x" * 5000))


# Property tests: whatever the bytes, read_mnist gives a valid Mnist or a DatasetError.

HYPOTHESIS_FILES = settings(max_examples=150, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def small_idx(mnist):
    """name -> raw IDX bytes of a small valid dataset (3 train, 2 valid images)."""
    arrays = small_arrays(mnist, train=3, valid=2)
    return {name: idx_bytes(arrays[key]) for key, name in IDX_NAMES.items()}


def read_or_dataset_error(source) -> data.Mnist | None:
    try:
        loaded = read_mnist(source)
    except DatasetError as error:
        assert str(error)
        return None
    check_mnist(loaded)
    return loaded


@HYPOTHESIS_FILES
@given(raw=st.binary(max_size=3000), magic=st.sampled_from([data.IMAGES_MAGIC, data.LABELS_MAGIC]),
       gz=st.booleans(), compress=st.booleans())
def test_any_bytes_as_an_idx_file_are_an_array_or_dataset_error(tmp_path, raw, magic, gz, compress):
    path = tmp_path / ("file-idx-ubyte.gz" if gz else "file-idx-ubyte")
    path.write_bytes(gzip.compress(raw) if compress else raw)  # a .gz name may hold anything
    try:
        array = read_idx(path, magic)
    except DatasetError as error:
        assert str(error).startswith(str(path))
        return
    assert array.dtype == np.uint8 and array.ndim == magic & 0xFF


@HYPOTHESIS_FILES
@given(name=st.sampled_from(list(IDX_NAMES.values())), data_=st.data())
def test_any_damage_to_an_idx_file_is_mnist_or_dataset_error(tmp_path, small_idx, name, data_):
    folder = tmp_path / "idx"
    folder.mkdir(exist_ok=True)
    for other, raw in small_idx.items():
        (folder / other).write_bytes(raw)
    raw = bytearray(small_idx[name])
    ndim = raw[3]
    # Any header value: magic, type byte, number of dimensions, each dimension.
    for position in data_.draw(st.lists(st.integers(0, 3 + 4 * ndim), max_size=4)):
        raw[position] = data_.draw(st.integers(0, 255))
    for position, size in data_.draw(st.lists(st.tuples(st.integers(0, 4 + 4 * ndim), st.integers(0, 4)),
                                              max_size=2)):
        raw[position : position + 4] = data_.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")[:size]
    raw += data_.draw(st.binary(max_size=8))
    raw = raw[: data_.draw(st.integers(0, len(raw)))] if data_.draw(st.booleans()) else raw
    (folder / name).write_bytes(bytes(raw))
    read_or_dataset_error(folder)


DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.int64, np.float32, np.float64, np.bool_,
                          np.complex64, np.dtype("U2"), np.dtype("S3"), np.dtype(">u2"),
                          np.dtype([("a", "u1")])])


def any_array(images: bool, rows: int):
    """The right shape and dtype (`rows` of them) most of the time; anything else the rest."""
    shape = (rows, 28, 28) if images else (rows,)
    right = npst.arrays(np.uint8, shape, elements=st.integers(0, 255 if images else 10))
    wrong = DTYPES.flatmap(lambda dtype: npst.arrays(dtype, npst.array_shapes(min_dims=0, max_dims=4,
                                                                                max_side=30)))
    return st.one_of(right, right, right, wrong)


@HYPOTHESIS_FILES
@given(train=st.integers(0, 3), valid=st.integers(0, 3), data_=st.data(), compressed=st.booleans())
def test_any_arrays_under_the_npz_keys_are_mnist_or_dataset_error(tmp_path, train, valid, data_, compressed):
    arrays = {key: data_.draw(any_array(key.startswith("x_"), train if key.endswith("train") else valid),
                              label=key)
              for key in data.NPZ_KEYS}
    path = tmp_path / "mnist.npz"
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    loaded = read_or_dataset_error(path)
    if loaded is not None:
        np.testing.assert_array_equal(loaded.x_train, arrays["x_train"])
        np.testing.assert_array_equal(loaded.y_valid, arrays["y_test"])


@HYPOTHESIS_FILES
@given(data_=st.data(), compressed=st.booleans())
def test_any_damage_to_an_npz_file_is_mnist_or_dataset_error(tmp_path, mnist, data_, compressed):
    path = tmp_path / "mnist.npz"
    (np.savez_compressed if compressed else np.savez)(path, **small_arrays(mnist, train=2, valid=1))
    raw = bytearray(path.read_bytes())
    for _ in range(data_.draw(st.integers(1, 6))):
        position = data_.draw(st.integers(0, len(raw) - 1))
        raw[position] = data_.draw(st.integers(0, 255))
    if data_.draw(st.booleans()):
        del raw[data_.draw(st.integers(0, len(raw))):]
    path.write_bytes(bytes(raw))
    read_or_dataset_error(path)


@HYPOTHESIS_FILES
@given(raw=st.binary(max_size=2000))
def test_any_bytes_as_an_npz_file_are_a_dataset_error(tmp_path, raw):
    path = tmp_path / "mnist.npz"
    path.write_bytes(raw)
    assert read_or_dataset_error(path) is None
