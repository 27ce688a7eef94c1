"""The class's drawings as files a teacher takes away: a Keras-style mnist.npz, or the IDX
pair MNIST itself is published as (written by `mnist_core.idx`, which also reads MNIST)."""

from __future__ import annotations

import zipfile

import numpy as np

from mnist_core import idx
from mnist_core.drawings.dataset import Drawings
from mnist_core.drawings.errors import build_in_memory

IDX_IMAGES_NAME = "drawings-images-idx3-ubyte.gz"
IDX_LABELS_NAME = "drawings-labels-idx1-ubyte.gz"


def export_npz(drawings: Drawings) -> bytes:
    """A Keras-style mnist.npz: held-out drawings as x_test/y_test, the rest as x_train/y_train.

    `mnist_core.data.read_mnist` (and `np.load`) read it like MNIST itself. Raises
    DrawingStoreError (never anything else) when it cannot be built.
    """
    hold = drawings.holdout
    return build_in_memory("mnist.npz", lambda buffer: np.savez_compressed(
        buffer, x_train=drawings.images[~hold], y_train=drawings.labels[~hold],
        x_test=drawings.images[hold], y_test=drawings.labels[hold]))


def export_idx_zip(drawings: Drawings) -> bytes:
    """A zip of the IDX pair, gzipped as MNIST publishes its files. Raises DrawingStoreError
    (never anything else) when it cannot be built."""
    def write(buffer):
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr(IDX_IMAGES_NAME, idx.encode_gz(drawings.images, idx.IMAGES_MAGIC))
            archive.writestr(IDX_LABELS_NAME, idx.encode_gz(drawings.labels, idx.LABELS_MAGIC))

    return build_in_memory("IDX files", write)
