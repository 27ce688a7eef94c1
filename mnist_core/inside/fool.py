"""Try to fool it: the input shifted, turned, thickened, thinned or noisy, and where the
prediction flips. Numpy and Pillow only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from mnist_core.data import IMAGE_SIZE, NUM_PIXELS
from mnist_core.inside.network import Network

MAX_SHIFT = 8  # pixels
MAX_ROTATION = 90  # degrees
MAX_THICKNESS = 3  # steps of growing or shrinking the strokes by one pixel
MAX_NOISE = 1.0  # standard deviation of the added noise, in units of full ink


@dataclass(frozen=True)
class Perturbation:
    """How to change an input; each field bounded like the page's slider of the same name."""

    shift_x: int = 0  # pixels, positive = right
    shift_y: int = 0  # pixels, positive = down
    rotation: float = 0.0  # degrees, positive = anticlockwise
    thickness: int = 0  # positive = thicker strokes, negative = thinner
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self):
        for name, bound in (("shift_x", MAX_SHIFT), ("shift_y", MAX_SHIFT),
                            ("rotation", MAX_ROTATION), ("thickness", MAX_THICKNESS)):
            if not -bound <= getattr(self, name) <= bound:
                raise ValueError(f"{name} must be from {-bound} to {bound}, got {getattr(self, name)}")
        if not 0 <= self.noise <= MAX_NOISE:
            raise ValueError(f"noise must be from 0 to {MAX_NOISE}, got {self.noise}")

    @property
    def is_identity(self) -> bool:
        return self == Perturbation(seed=self.seed)


def perturb(image: np.ndarray, change: Perturbation) -> np.ndarray:
    """(28, 28) float in [0, 1] -> the changed image, (28, 28) float32 in [0, 1].

    Order: stroke width, rotation about the centre, shift (what leaves the square is lost,
    what comes in is background), then noise.
    """
    out = np.asarray(image, np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE)
    for _ in range(abs(change.thickness)):
        out = _dilate(out) if change.thickness > 0 else -_dilate(-out)
    if change.rotation:
        rotated = Image.fromarray(out).rotate(change.rotation, Image.Resampling.BILINEAR)
        out = np.asarray(rotated, np.float32)
    out = shift(out, change.shift_x, change.shift_y)
    if change.noise:
        out = out + np.random.default_rng(change.seed).normal(0, change.noise, out.shape)
    return np.clip(out, 0, 1).astype(np.float32)


def shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Move an image dx pixels right and dy down, filling with background (no wrapping)."""
    out = np.zeros_like(image)
    h, w = image.shape
    if abs(dx) >= w or abs(dy) >= h:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def _dilate(image: np.ndarray) -> np.ndarray:
    """Grey dilation by a plus-shaped 3x3 neighbourhood: strokes grow about a pixel each side."""
    padded = np.pad(image, 1, constant_values=image.min())
    return np.max([padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1],
                   padded[1:-1, :-2], padded[1:-1, 2:]], axis=0)


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass."""
    mass = np.asarray(image, np.float64)
    total = mass.sum()
    rows, cols = np.indices(mass.shape)
    return float((rows * mass).sum() / total), float((cols * mass).sum() / total)


# (what the page says, field of Perturbation, the amounts tried in order, unit): 53 changed
# copies, one batch through the network.
SCAN_SHIFT = 6  # further, most digits leave the 28x28 square
SCANS = (
    ("shifted right", "shift_x", tuple(range(1, SCAN_SHIFT + 1)), "px"),
    ("shifted left", "shift_x", tuple(range(-1, -SCAN_SHIFT - 1, -1)), "px"),
    ("shifted up", "shift_y", tuple(range(-1, -SCAN_SHIFT - 1, -1)), "px"),
    ("shifted down", "shift_y", tuple(range(1, SCAN_SHIFT + 1)), "px"),
    ("turned anticlockwise", "rotation", tuple(range(10, MAX_ROTATION + 1, 10)), "°"),
    ("turned clockwise", "rotation", tuple(range(-10, -MAX_ROTATION - 1, -10)), "°"),
    ("thicker", "thickness", tuple(range(1, MAX_THICKNESS + 1)), "step"),
    ("thinner", "thickness", tuple(range(-1, -MAX_THICKNESS - 1, -1)), "step"),
    ("noisier", "noise", (0.2, 0.4, 0.6, 0.8, 1.0), "noise"),
)


@dataclass(frozen=True)
class BreakingPoint:
    """The smallest change of one kind that flips the prediction (amount None: it never did)."""

    change: str  # "shifted right"
    unit: str  # "px", "°", "step" or "noise"
    amount: float | None
    becomes: int | None
    tried: float  # the largest amount tried

    def sentence(self, digit: int) -> str:
        """"Shifted right by 3 px it becomes a 1", or "Thicker: still a 7 up to 3 steps"."""
        if self.amount is None:
            return f"{self.change.capitalize()}: still a {digit} up to {self._amount(self.tried)}"
        if self.unit == "noise":
            how = f"with {self._amount(self.amount)}"
        elif self.unit == "step":
            how = f"{self._amount(self.amount)} {self.change}"
        else:
            how = f"{self.change} by {self._amount(self.amount)}"
        return f"{how[0].upper()}{how[1:]} it becomes a {self.becomes}"

    def _amount(self, value: float) -> str:
        value = abs(value)
        if self.unit == "noise":
            return f"noise {value:g}"
        if self.unit == "step":
            return f"{value:g} step{'s' if value != 1 else ''}"
        return f"{value:g}{'' if self.unit == '°' else ' '}{self.unit}"


def breaking_points(net: Network, image: np.ndarray) -> tuple[int, list[BreakingPoint]]:
    """For each kind of change: the smallest amount that changes the predicted digit.

    All changed images go through the network as one batch (53 images).
    Returns the digit predicted for `image` itself and one BreakingPoint per kind.
    """
    images, owners = [np.asarray(image, np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE)], [None]
    for scan_index, (_, name, amounts, _) in enumerate(SCANS):
        for amount in amounts:
            images.append(perturb(images[0], Perturbation(**{name: amount})))
            owners.append((scan_index, amount))
    predicted = net.predict_proba(np.stack(images).reshape(len(images), NUM_PIXELS)).argmax(axis=1)
    digit = int(predicted[0])
    found: dict[int, BreakingPoint] = {}
    for (scan_index, amount), label in zip(owners[1:], predicted[1:], strict=True):
        change, _, _, unit = SCANS[scan_index]
        if scan_index not in found and label != digit:
            found[scan_index] = BreakingPoint(change, unit, amount, int(label),
                                              abs(SCANS[scan_index][2][-1]))
    points = [found.get(i, BreakingPoint(scan[0], scan[3], None, None, abs(scan[2][-1])))
              for i, scan in enumerate(SCANS)]
    return digit, points
