"""The plain-data models agree with the Keras models the worker builds."""

from __future__ import annotations

import keras
import pytest

from mnist_core.config import MODELS, TrainConfig
from mnist_core.models import count_params, keras_code, summary
from mnist_core.training.fit import build_model

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", MODELS)
def test_summary_matches_keras(name):
    keras.backend.clear_session()  # layer names count from zero again, as in a fresh notebook
    model = build_model(name)
    rows = summary(name)
    assert [r["params"] for r in rows] == [layer.count_params() for layer in model.layers]
    assert [r["output_shape"] for r in rows] == [tuple(layer.output.shape)
                                                 for layer in model.layers]
    assert [r["layer"] for r in rows] == [layer.name for layer in model.layers]
    assert count_params(name) == model.count_params()


def test_seed_mlp_is_the_notebooks_network():
    rows = summary("seed_mlp")
    assert [(r["type"], r["output_shape"]) for r in rows] == [
        ("Dense", (None, 512)), ("Dense", (None, 512)), ("Dense", (None, 10))]
    assert count_params("seed_mlp") == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10


@pytest.mark.parametrize("config", [
    TrainConfig(), TrainConfig(model="cnn", optimizer="sgd", lr_schedule=False, train_size=5000),
    TrainConfig.notebook(), TrainConfig(augment=True, epochs=2), TrainConfig.for_drawing(),
    TrainConfig.fast_cnn(),
])
def test_keras_code_builds_the_same_model_and_optimizer(config):
    code = keras_code(config)
    compile(code, "<keras_code>", "exec")
    # Run the code with the data loading replaced by a tiny slice: the model, the compile
    # and the fit lines are executed as a learner would run them.
    (x_train, y_train), (x_valid, y_valid) = _tiny()
    code = code.replace("keras.datasets.mnist.load_data()",
                        "((x_train, y_train), (x_valid, y_valid))")
    code = code.replace(f"epochs={config.epochs}", "epochs=1")
    namespace = {"x_train": x_train, "y_train": y_train, "x_valid": x_valid, "y_valid": y_valid}
    exec(code, namespace)
    model = namespace["model"]
    assert model.count_params() == count_params(config.model)
    assert type(model.optimizer).__name__.lower() == config.optimizer
    assert "loss" in namespace["history"].history


def _tiny():
    from mnist_core.data import read_mnist

    data = read_mnist()
    return (data.x_train[:1200], data.y_train[:1200]), (data.x_valid[:100], data.y_valid[:100])
