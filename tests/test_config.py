"""TrainConfig: bounds, messages, and round trips."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mnist_core.config import BOUNDS, TrainConfig

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("field, bad, message", [
    ("epochs", 0, "epochs must be from 1 to 50, got 0"),
    ("epochs", 51, "epochs must be from 1 to 50, got 51"),
    ("batch_size", 8, "batch_size must be from 16 to 4096, got 8"),
    ("batch_size", 5000, "batch_size must be from 16 to 4096"),
    ("learning_rate", 2.0, "learning_rate must be from 1e-05 to 1.0, got 2.0"),
    ("learning_rate", 0.0, "learning_rate must be from 1e-05 to 1.0"),
    ("train_size", 999, "train_size must be from 1000 to 60000"),
    ("train_size", 60001, "train_size must be from 1000 to 60000"),
    ("epochs", 2.5, "epochs must be a whole number from 1 to 50"),
    ("epochs", "5", "epochs must be a number from 1 to 50"),
    ("model", "resnet", "model must be one of seed_mlp, cnn"),
    ("optimizer", "lion", "optimizer must be one of adam, rmsprop, sgd"),
    ("precision", "float16", "precision must be one of auto, float32, mixed_bfloat16"),
])
def test_out_of_bounds_is_refused_with_the_allowed_range(field, bad, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**{field: bad})


@pytest.mark.parametrize("field", sorted(BOUNDS))
def test_bounds_themselves_are_accepted(field):
    low, high = BOUNDS[field]
    assert getattr(TrainConfig(**{field: low}), field) == low
    assert getattr(TrainConfig(**{field: high}), field) == high


def test_defaults_are_the_fast_seed_mlp_and_notebook_is_the_notebook():
    config = TrainConfig()
    assert (config.model, config.epochs, config.batch_size) == ("seed_mlp", 4, 512)
    notebook = TrainConfig.notebook()
    assert (notebook.epochs, notebook.batch_size, notebook.optimizer,
            notebook.learning_rate) == (5, 32, "rmsprop", 1e-3)
    assert not notebook.lr_schedule


def test_dict_round_trip_ignores_unknown_keys():
    config = TrainConfig(model="cnn", epochs=3, batch_size=128, learning_rate=0.01, seed=7)
    assert TrainConfig.from_dict({**config.to_dict(), "parent": "x"}) == config


def test_steps_per_epoch_rounds_up():
    assert TrainConfig(batch_size=512).steps_per_epoch() == 118
    assert TrainConfig(batch_size=4096, train_size=1000).steps_per_epoch() == 1


def test_each_model_has_a_recipe_and_the_cli_starts_from_it():
    from mnist_core.training.cli import config_from_args, parse_args

    assert TrainConfig.recipe("seed_mlp") == TrainConfig()
    assert TrainConfig.recipe("cnn") == TrainConfig(model="cnn", epochs=5, learning_rate=0.002)
    keras_cnn = config_from_args(parse_args(["--model", "cnn", "--epochs", "15",
                                             "--batch-size", "128"]))  # the README's command
    assert (keras_cnn.epochs, keras_cnn.batch_size, keras_cnn.learning_rate) == (15, 128, 0.002)
    fast = TrainConfig.recipe("fast_cnn", origin="train_page")
    assert (fast.model, fast.learning_rate, fast.origin) == ("fast_cnn", 0.005, "train_page")
    assert config_from_args(parse_args([])) == TrainConfig()
    assert config_from_args(parse_args(["--model", "fast_cnn"])) == TrainConfig.fast_cnn()
    given = config_from_args(parse_args(["--model", "fast_cnn", "--learning-rate", "0.01",
                                         "--epochs", "3", "--no-lr-schedule"]))
    assert (given.learning_rate, given.epochs, given.lr_schedule) == (0.01, 3, False)
    assert given.augment and not config_from_args(parse_args(["--model", "fast_cnn",
                                                              "--no-augment"])).augment
    assert config_from_args(parse_args(["--augment"])).augment
    # --drawing sets the drawing recipe's settings, and what is given still wins; with a model
    # of its own, that model's recipe with the drawing augmentations.
    assert config_from_args(parse_args(["--drawing", "--epochs", "3"])).epochs == 3
    assert not config_from_args(parse_args(["--drawing", "--no-pen-strokes"])).pen_strokes
    mlp = config_from_args(parse_args(["--drawing", "--model", "seed_mlp"]))
    assert mlp == replace(TrainConfig(), augment=True, pen_strokes=True)
    assert config_from_args(parse_args(["--drawing", "--learning-rate", "0.01"])
                            ).learning_rate == 0.01
    # --notebook is the notebook's fit, 5 epochs of it; what is given still wins.
    assert config_from_args(parse_args(["--notebook"])) == TrainConfig.notebook()
    given = config_from_args(parse_args(["--notebook", "--epochs", "2", "--precision", "auto"]))
    assert (given.epochs, given.precision, given.batch_size) == (2, "auto", 32)
    assert not config_from_args(parse_args(["--no-validation"])).validation
    drawing = config_from_args(parse_args(["--drawing"]))
    expected = TrainConfig.for_drawing()
    assert (drawing.model, drawing.epochs, drawing.learning_rate, drawing.augment,
            drawing.pen_strokes) == (expected.model, expected.epochs, expected.learning_rate,
                                     expected.augment, expected.pen_strokes)
