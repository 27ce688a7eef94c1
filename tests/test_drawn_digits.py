"""Canvas drawings through the MNIST steps and a trained model: the steps are what make
drawn digits recognisable."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_core.data import flatten, normalize
from mnist_core.inference import Classifier, doubt
from mnist_core.preprocess import mnist_steps, naive_downscale
from tests.test_preprocess import canvas_from_digit

pytestmark = pytest.mark.trains


def test_mnist_steps_recover_small_off_centre_digits(trained_run, mnist):
    """Real validation digits drawn small in a corner: the MNIST steps restore them, a naive
    downscale of the whole canvas does not."""
    classifier = Classifier(trained_run.onnx_path)
    rng = np.random.default_rng(0)
    indices = rng.choice(len(mnist.x_valid), 200, replace=False)
    stepped, naive = [], []
    for i in indices:
        canvas = canvas_from_digit(mnist.x_valid[i], 4, int(rng.integers(0, 60)),
                                   int(rng.integers(0, 60)))
        stepped.append(mnist_steps(canvas).x[0])
        naive.append(normalize(flatten(naive_downscale(canvas)[None]))[0])
    labels = mnist.y_valid[indices]
    stepped_accuracy = (classifier.predict_proba(np.array(stepped)).argmax(1) == labels).mean()
    naive_accuracy = (classifier.predict_proba(np.array(naive)).argmax(1) == labels).mean()
    assert stepped_accuracy > 0.9
    assert naive_accuracy < 0.5


def test_the_model_is_unsure_far_more_often_when_it_is_wrong(trained_run, mnist):
    """Doubt is worth showing: it marks the mistakes, not the right answers."""
    probabilities = Classifier(trained_run.onnx_path).predict_proba(
        normalize(flatten(mnist.x_valid)))
    wrong = probabilities.argmax(axis=1) != mnist.y_valid
    unsure = np.array([doubt(p) is not None for p in probabilities])
    assert unsure[wrong].mean() > 5 * unsure[~wrong].mean()
    # When unsure and wrong, the runner-up it names is most often the right digit.
    named = np.array([doubt(p)[0] if u else -1 for p, u in zip(probabilities, unsure, strict=True)])
    assert (named[wrong & unsure] == mnist.y_valid[wrong & unsure]).mean() > 0.5
