"""Why this digit: which pixels made the network pick its digit over another, in numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_core.data import IMAGE_SIZE, NUM_CLASSES
from mnist_core.inside.network import Network, Trace


@dataclass(frozen=True)
class Saliency:
    """Why `digit` and not `rival`, pixel by pixel, as (28, 28) float32 maps.

    `gradient`: how much more the network would favour `digit` over `rival` per unit of
    extra ink at each pixel. `attribution` = gradient x input: the share of each inked
    pixel in the decision (positive: votes for `digit`, negative: for `rival`); zero on the
    background, where there is no ink to vote.
    """

    digit: int
    rival: int
    gradient: np.ndarray
    attribution: np.ndarray


def saliency(net: Network, x: np.ndarray, digit: int | None = None,
             rival: int | None = None, trace: Trace | None = None) -> Saliency:
    """For one input x (784,) or (1, 784): the predicted digit against the runner-up."""
    trace = trace if trace is not None else net.forward(x)
    order = np.argsort(-trace.probabilities[0])
    digit = int(order[0]) if digit is None else int(digit)
    if rival is None or int(rival) == digit:
        rival = int(order[1]) if order[0] == digit else int(order[0])
    contrast = np.zeros((1, NUM_CLASSES), np.float32)
    contrast[0, digit], contrast[0, rival] = 1, -1
    gradient = net.input_gradient(trace, contrast)[0].reshape(IMAGE_SIZE, IMAGE_SIZE)
    attribution = gradient * trace.x[0].reshape(IMAGE_SIZE, IMAGE_SIZE)
    return Saliency(digit, int(rival), gradient, attribution)
