"""Load MNIST offline and prepare it the way the notebook does.

`load_mnist()` returns exactly what `keras.datasets.mnist.load_data()` returns, without
importing TensorFlow or Keras and without the internet:

    (x_train, y_train), (x_valid, y_valid) = load_mnist()
    # x_train (60000, 28, 28) uint8 0-255, y_train (60000,) uint8 0-9
    # x_valid (10000, 28, 28) uint8 0-255, y_valid (10000,) uint8 0-9

The notebook's three preparation steps are `flatten`, `normalize` and `categorize`.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

NUM_CLASSES = 10
IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE  # 784

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"
CHECKSUMS_FILE = "SHA256SUMS"

# (images, labels) base names of the two splits, as MNIST publishes them.
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "valid": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class DatasetError(Exception):
    """The MNIST files are missing or broken. The message names the file and the fault."""


@dataclass(frozen=True)
class Mnist:
    """The four arrays plus where they came from."""

    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_valid: np.ndarray  # (10000, 28, 28) uint8
    y_valid: np.ndarray  # (10000,) uint8
    source: str  # the folder or .npz file that was read

    def as_tuples(self):
        """The `keras.datasets.mnist.load_data()` layout."""
        return (self.x_train, self.y_train), (self.x_valid, self.y_valid)


def load_mnist(source: str | os.PathLike | None = None):
    """`(x_train, y_train), (x_valid, y_valid)`, as `keras.datasets.mnist.load_data()` gives.

    The source used is logged; `read_mnist` returns it with the arrays.
    """
    return read_mnist(source).as_tuples()


def candidate_sources(source: str | os.PathLike | None = None) -> list[Path]:
    """The places `read_mnist` looks, in order: argument or `MNIST_DATA`, bundled, Keras cache."""
    chosen = source if source is not None else os.environ.get("MNIST_DATA") or None
    if chosen is not None:
        # An explicit choice is the only place looked at: silently falling back to the
        # bundled copy would hide a teacher's typo.
        return [Path(chosen).expanduser()]
    return [BUNDLED_DIR, KERAS_CACHE]


def read_mnist(source: str | os.PathLike | None = None) -> Mnist:
    """Load MNIST from the first source found; raise `DatasetError` on any fault.

    `source` (or the `MNIST_DATA` environment variable) is a folder of IDX files, raw or
    `.gz`, or a Keras-format `mnist.npz`. Without one: the bundled `data/mnist/`, then
    `~/.keras/datasets/mnist.npz`. Nothing partial is ever returned.
    """
    tried = []
    for place in candidate_sources(source):
        if place.is_file():
            data = _read_npz(place)
        elif place.is_dir() and _has_idx_files(place):
            data = _read_idx_folder(place)
        elif place.is_dir() and (place / "mnist.npz").is_file():
            data = _read_npz(place / "mnist.npz")
        else:
            tried.append(str(place))
            continue
        log.info("MNIST loaded from %s", data.source)
        return data
    raise DatasetError(
        "MNIST not found. Looked for IDX files or mnist.npz in: " + ", ".join(tried)
    )


def _has_idx_files(folder: Path) -> bool:
    return any(_find(folder, name) is not None for pair in SPLITS.values() for name in pair)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx_folder(folder: Path) -> Mnist:
    checksums = _read_checksums(folder)
    arrays = {}
    for split, (images_name, labels_name) in SPLITS.items():
        paths = []
        for name in (images_name, labels_name):
            path = _find(folder, name)
            if path is None:
                raise DatasetError(f"{folder / name}[.gz]: missing from {folder}")
            paths.append(path)
        images = read_idx(paths[0], IMAGES_MAGIC, checksums.get(paths[0].name))
        labels = read_idx(paths[1], LABELS_MAGIC, checksums.get(paths[1].name))
        _check_pair(images, labels, paths[0].name, paths[1].name)
        arrays[split] = (images, labels)
    return Mnist(*arrays["train"], *arrays["valid"], source=str(folder))


def _read_checksums(folder: Path) -> dict[str, str]:
    """File name -> expected SHA-256, from a `SHA256SUMS` file when the folder has one."""
    sums_path = folder / CHECKSUMS_FILE
    if not sums_path.is_file():
        return {}
    sums = {}
    for line in sums_path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def read_idx(path: Path, magic: int, sha256: str | None = None) -> np.ndarray:
    """Parse one IDX file (raw or gzip) of unsigned bytes into an array of its header's shape.

    Checks the SHA-256 when given, the magic number, and that the header's dimensions
    match the data's size exactly.
    """
    raw = path.read_bytes()
    if sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise DatasetError(
                f"{path}: checksum mismatch, expected SHA-256 {sha256}, got {actual}"
            )
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: not a valid gzip file ({exc})") from None
    if len(raw) < 4:
        raise DatasetError(f"{path}: truncated, only {len(raw)} bytes, no IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DatasetError(
            f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated, header needs {header} bytes, got {len(raw)}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        fault = "truncated" if len(raw) < expected else "too long"
        raise DatasetError(
            f"{path}: {fault}, expected {expected} bytes for shape {shape}, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str):
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(
            f"{images_name}: images are {images.shape[1:]}, expected (28, 28)"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{images_name} has {images.shape[0]} images but {labels_name} has "
            f"{labels.shape[0]} labels: count mismatch"
        )
    if labels.size and labels.max() >= NUM_CLASSES:
        bad = int(np.argmax(labels >= NUM_CLASSES))
        raise DatasetError(
            f"{labels_name}: label out of range, label {int(labels[bad])} at index {bad} "
            f"(labels must be 0-9)"
        )


def _read_npz(path: Path) -> Mnist:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in NPZ_KEYS if key not in npz.files]
            if missing:
                raise DatasetError(
                    f"{path}: not a Keras mnist.npz, missing arrays {', '.join(missing)} "
                    f"(has {', '.join(npz.files) or 'none'})"
                )
            x_train, y_train, x_valid, y_valid = (np.asarray(npz[key]) for key in NPZ_KEYS)
    except DatasetError:
        raise
    except (OSError, ValueError, zlib.error, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: cannot read as .npz ({exc})") from None
    for name, array in (("x_train", x_train), ("y_train", y_train),
                        ("x_test", x_valid), ("y_test", y_valid)):
        if array.dtype != np.uint8:
            raise DatasetError(f"{path}: {name} has dtype {array.dtype}, expected uint8")
    _check_pair(x_train, y_train, f"{path}:x_train", f"{path}:y_train")
    _check_pair(x_valid, y_valid, f"{path}:x_test", f"{path}:y_test")
    return Mnist(x_train, y_train, x_valid, y_valid, source=str(path))


def flatten(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) -> (N, 784), as the notebook's `x_train.reshape(60000, 784)`."""
    return images.reshape(len(images), NUM_PIXELS)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 0-255 -> float32 in [0, 1] (divide by 255)."""
    return images.astype(np.float32) / 255.0


def categorize(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Labels (N,) -> one-hot (N, num_classes) float32, as `keras.utils.to_categorical`."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    one_hot = np.zeros((labels.size, num_classes), dtype=np.float32)
    one_hot[np.arange(labels.size), labels] = 1.0
    return one_hot
