"""Predicting with a saved model, and saying when the model is unsure."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_core.inference import doubt

pytestmark = pytest.mark.unit


def probabilities(**by_digit: float) -> np.ndarray:
    p = np.zeros(10)
    for digit, value in by_digit.items():
        p[int(digit[1:])] = value
    return p


@pytest.mark.parametrize("p, expected", [
    (probabilities(d7=0.97, d1=0.03), None),  # sure
    (probabilities(d7=0.80, d1=0.20), None),  # sure enough, the runner-up far behind
    (probabilities(d7=0.70, d1=0.05, d2=0.25), (2, 0.25)),  # top probability low
    (probabilities(d4=0.64, d9=0.32, d8=0.04), (9, 0.32)),  # a 4 that could be a 9
    (probabilities(d3=0.78, d5=0.22), None),
    (probabilities(d3=0.77, d5=0.03, d8=0.20), None),
    (np.full(10, 0.1), "any"),  # all equal: unsure, whichever comes second
])
def test_doubt_names_the_runner_up_when_unsure(p, expected):
    result = doubt(p)
    if expected == "any":
        assert result is not None and result[1] == pytest.approx(0.1)
    elif expected is None:
        assert result is None
    else:
        assert result[0] == expected[0] and result[1] == pytest.approx(expected[1])
