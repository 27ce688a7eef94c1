"""Skeletons: a digit thinned to one-pixel-wide strokes (Zhang & Suen 1984), in numpy.

The worker redraws training digits with a pen along their skeletons (the "pen strokes"
augmentation: a mouse draws constant-width strokes, MNIST's pens did not), and the drawn-digit
benchmark traces skeletons into mouse strokes (tests/strokes.py).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

# The skeletons of MNIST's 60000 training digits, made once and shipped: thinning them all
# takes seconds, which every pen-stroke training would otherwise spend before its first step.
STORED = Path(__file__).resolve().parent.parent / "data" / "skeletons" / "train-skeletons.npz"
INK = 128  # a pixel is ink from this grey level (0.5 after normalizing by /255)

# (dy, dx) of the 8 neighbours, clockwise from north: P2..P9 in Zhang & Suen (1984).
NEIGHBOURS = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def zhang_suen_tables() -> np.ndarray:
    """(2, 256) bool: whether each Zhang-Suen sub-step removes an ink pixel, by the 8-bit
    code of its neighbours (bit i set when neighbour P(i + 2) is ink)."""
    codes = np.arange(256)
    p = [(codes >> i) & 1 for i in range(8)]
    count = sum(p)  # B(P1): inked neighbours
    # A(P1): 0 -> 1 transitions in the cyclic sequence P2, P3, ..., P9, P2
    transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
    base = (count >= 2) & (count <= 6) & (transitions == 1)
    p2, p4, p6, p8 = p[0], p[2], p[4], p[6]
    first = base & (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
    second = base & (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
    return np.stack([first, second])


ZHANG_SUEN = zhang_suen_tables()


def thin(ink: np.ndarray) -> np.ndarray:
    """(H, W) or (N, H, W) bool -> one-pixel-wide skeletons (Zhang & Suen 1984).

    Vectorised over the batch with a 256-entry table per sub-step; images whose skeleton
    is done drop out, so a batch costs about its slowest few images, not N times them.
    """
    single = ink.ndim == 2
    batch = ink[None] if single else ink
    _, h, w = batch.shape
    image = np.pad(batch.astype(np.uint8), ((0, 0), (1, 1), (1, 1)))
    active = np.arange(len(image))
    while active.size:
        changed = np.zeros(active.size, bool)
        for table in ZHANG_SUEN:
            sub = image[active]
            code = np.zeros((active.size, h, w), np.uint8)
            for bit, (dy, dx) in enumerate(NEIGHBOURS):
                code |= sub[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] << bit
            centre = sub[:, 1:-1, 1:-1]
            remove = (centre == 1) & table[code]
            centre[remove] = 0
            image[active] = sub
            changed |= remove.any(axis=(1, 2))
        active = active[changed]
    skeletons = image[:, 1:-1, 1:-1].astype(bool)
    return skeletons[0] if single else skeletons


def digest(images: np.ndarray) -> str:
    """SHA-256 of (N, 28, 28) uint8 images: which images a stored set of skeletons is of."""
    return hashlib.sha256(np.ascontiguousarray(images, np.uint8).tobytes()).hexdigest()


def train_skeletons(images: np.ndarray, rows: np.ndarray | None = None,
                    stored: Path = STORED) -> np.ndarray:
    """(N, H, W) uint8 images -> (N, H, W) bool skeletons of their ink (pixels >= INK), or of
    `rows` of them only.

    Read from `stored` when it holds exactly these images' skeletons (the digest it records
    matches: MNIST's training digits as shipped), else thinned here. A stored file that
    cannot be read (damaged, or a Git LFS pointer) is the same as none.
    """
    try:
        with np.load(stored) as archive:
            if str(archive["digest"]) == digest(images):
                shape = tuple(archive["shape"])
                bits = np.unpackbits(archive["packed"], count=int(np.prod(shape)))
                every = bits.reshape(shape).astype(bool)
                return every if rows is None else every[rows]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass
    return thin((images if rows is None else images[rows]) >= INK)


def write_train_skeletons(images: np.ndarray, path: Path = STORED) -> None:
    """Thin `images` and store their skeletons, packed 8 pixels a byte, with their digest."""
    from mnist_core.inside.files import write_npz_atomically

    skeletons = thin(images >= INK)
    write_npz_atomically(path, {"digest": np.array(digest(images)),
                                "shape": np.array(skeletons.shape),
                                "packed": np.packbits(skeletons)}, compressed=True)


if __name__ == "__main__":
    from mnist_core.data import read_mnist

    write_train_skeletons(read_mnist().x_train)
    print(f"wrote {STORED}")
