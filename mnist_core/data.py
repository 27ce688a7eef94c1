"""Load MNIST offline and prepare it the way the notebook does.

`load_mnist()` returns exactly what `keras.datasets.mnist.load_data()` returns, without
importing TensorFlow or Keras and without the internet:

    (x_train, y_train), (x_valid, y_valid) = load_mnist()
    # x_train (60000, 28, 28) uint8 0-255, y_train (60000,) uint8 0-9
    # x_valid (10000, 28, 28) uint8 0-255, y_valid (10000,) uint8 0-9

The notebook's three preparation steps are `flatten`, `normalize` and `categorize`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_core import idx
from mnist_core.idx import IMAGES_MAGIC, LABELS_MAGIC  # the files' format is idx's

log = logging.getLogger(__name__)

NUM_CLASSES = 10
IMAGE_SIZE = 28
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE  # 784

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data" / "mnist"
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"
CHECKSUMS_FILE = "SHA256SUMS"

# (images, labels) base names of the two splits, as MNIST publishes them.
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "valid": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPY_MAGIC = b"\x93NUMPY"

# Bounds on what a source may make the app load, whatever its headers claim: ~14x MNIST's
# 70000 images (EMNIST's largest split fits), 784 MB of pixels per file at most.
MAX_IMAGES = 1_000_000
MAX_CHECKSUMS_BYTES = 64 * 1024


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
        # os.path leaves an unknown "~user" as it is (Path.expanduser raises): then "does not exist".
        return [Path(os.path.expanduser(chosen))]
    return [BUNDLED_DIR, KERAS_CACHE]


def read_mnist(source: str | os.PathLike | None = None) -> Mnist:
    """Load MNIST from the first source found; raise `DatasetError` on any fault.

    `source` (or the `MNIST_DATA` environment variable) is a folder of IDX files, raw or
    `.gz`, or a Keras-format `mnist.npz`. Without one: the bundled `data/mnist/`, then
    `~/.keras/datasets/mnist.npz`. Nothing partial is ever returned.
    """
    tried = []
    for place in candidate_sources(source):
        try:
            found = _locate(place)
            if isinstance(found, str):
                tried.append(f"{place} ({found})")
                continue
            data = _read_idx_folder(found) if found.is_dir() else _read_npz(found)
        except OSError as exc:  # probing the path itself: no permission, name too long, I/O error
            raise DatasetError(f"{place}: cannot be read ({exc.strerror or exc})") from None
        log.info("MNIST loaded from %s", data.source)
        return data
    raise DatasetError(
        "MNIST not found. Looked for IDX files or mnist.npz in: " + ", ".join(tried)
    )


def _locate(place: Path) -> Path | str:
    """What to read at `place`: itself (an .npz file or an IDX folder), its mnist.npz, or why not."""
    if place.is_file():
        return place
    if not place.exists():
        return "does not exist"
    if not place.is_dir():
        return "not a regular file or folder"
    if _has_idx_files(place):
        return place
    if (place / "mnist.npz").is_file():
        return place / "mnist.npz"
    return "a folder without IDX files or mnist.npz"


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
    try:
        if sums_path.stat().st_size > MAX_CHECKSUMS_BYTES:
            raise DatasetError(f"{sums_path}: too large, over {MAX_CHECKSUMS_BYTES} bytes for checksums")
        text = sums_path.read_bytes().decode("ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{sums_path}: cannot read as a checksums file ({exc})") from None
    sums = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def read_idx(path: Path, magic: int, sha256: str | None = None) -> np.ndarray:
    """Parse one IDX file (raw or gzip) of unsigned bytes into an array of its header's shape.

    Checks the SHA-256 when given, then the format (`mnist_core.idx.decode`). Reads at most
    `MAX_IMAGES` images' worth of bytes. Raises DatasetError naming the file and the fault.
    """
    limit = idx.header_size(magic) + MAX_IMAGES * NUM_PIXELS
    try:
        size = path.stat().st_size
        if size > limit + limit // 100:  # gzip adds well under 1% to incompressible data
            raise DatasetError(f"{path}: too large, {size} bytes, more than {MAX_IMAGES} images")
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sha256:
            raise DatasetError(
                f"{path}: checksum mismatch, expected SHA-256 {sha256}, got {actual}"
            )
    try:
        return idx.decode(raw, magic, limit, path)
    except idx.IdxError as exc:
        raise DatasetError(str(exc)) from None


def _check_shape(name: str, shape: tuple[int, ...], labels: bool) -> None:
    """Refuse anything but (N, 28, 28) images or (N,) labels with 1 <= N <= MAX_IMAGES."""
    if labels and len(shape) != 1:
        raise DatasetError(f"{name}: labels have shape {tuple(shape)}, expected (N,)")
    if not labels and (len(shape) != 3 or tuple(shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE)):
        raise DatasetError(f"{name}: images have shape {tuple(shape)}, expected (N, 28, 28)")
    what = "labels" if labels else "images"
    if shape[0] < 1:
        raise DatasetError(f"{name}: empty, no {what} (shape {tuple(shape)})")
    if shape[0] > MAX_IMAGES:
        raise DatasetError(f"{name}: {shape[0]} {what}, more than the {MAX_IMAGES} this app loads")


def _check_pair(images: np.ndarray, labels: np.ndarray, images_name: str, labels_name: str):
    _check_shape(images_name, images.shape, labels=False)
    _check_shape(labels_name, labels.shape, labels=True)
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
    """A Keras-format mnist.npz: each array's header is checked before its data is read."""
    try:
        with path.open("rb") as file:
            if file.read(len(NPY_MAGIC)) == NPY_MAGIC:
                raise DatasetError(
                    f"{path}: a single .npy array, not a Keras mnist.npz holding {', '.join(NPZ_KEYS)}"
                )
        with zipfile.ZipFile(path) as archive:
            members = {name.removesuffix(".npy"): name for name in archive.namelist()}
            missing = [key for key in NPZ_KEYS if key not in members]
            if missing:
                has = ", ".join(list(members)[:10]) + (", ..." if len(members) > 10 else "")
                raise DatasetError(
                    f"{path}: not a Keras mnist.npz, missing arrays {', '.join(missing)} "
                    f"(has {has or 'none'})"
                )
            x_train, y_train, x_valid, y_valid = (
                _read_npy_member(path, archive, members[key], key) for key in NPZ_KEYS
            )
    except DatasetError:
        raise
    except Exception as exc:  # zipfile, zlib, bz2, lzma and numpy's header parser each raise their own
        raise DatasetError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc})") from None
    _check_pair(x_train, y_train, f"{path}:x_train", f"{path}:y_train")
    _check_pair(x_valid, y_valid, f"{path}:x_test", f"{path}:y_test")
    return Mnist(x_train, y_train, x_valid, y_valid, source=str(path))


def _read_npy_member(path: Path, archive: zipfile.ZipFile, member: str, key: str) -> np.ndarray:
    """One array of an .npz, refused on its header's dtype or shape before its data is read."""
    with archive.open(member) as file:
        try:
            version = np.lib.format.read_magic(file)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(file)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(file)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as exc:
            raise DatasetError(f"{path}: {key} is not a .npy array ({exc})") from None
    if dtype != np.uint8:
        raise DatasetError(f"{path}: {key} has dtype {dtype}, expected uint8")
    _check_shape(f"{path}:{key}", shape, labels=key.startswith("y_"))
    with archive.open(member) as file:
        return np.lib.format.read_array(file, allow_pickle=False)


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
