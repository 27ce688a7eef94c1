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
    (probabilities(d7=0.70, d1=0.30), None),  # sure enough, the runner-up far behind
    (probabilities(d7=0.55, d1=0.05, d2=0.40), (2, 0.40)),  # top probability low
    (probabilities(d4=0.62, d9=0.38), (9, 0.38)),  # runner-up close
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
