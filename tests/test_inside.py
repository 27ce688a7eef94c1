"""Inside the network: numpy forward pass, saliency, changes, snapshots, and the page.

Tiers, marked per test: `unit` (numpy only: random weights, made-up bad files), `trains`
(tiny Keras fits in this process: 2000 images, 1 epoch, as the references), `apptest` (the
page in Streamlit's AppTest over tiny real runs), `browser` (the page in Chromium, desktop
and phone).
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst
from streamlit.testing.v1 import AppTest

from mnist_core import inside, inside_plots
from mnist_core.config import MODELS, TrainConfig
from mnist_core.data import IMAGE_SIZE, NUM_CLASSES, NUM_PIXELS, categorize, flatten, normalize
from mnist_core.inside import InsideError, Perturbation, network
from mnist_core.models import layers_of, summary
from mnist_core.runs.store import ModelStore
from tests import app_run, e2e

REPO = Path(__file__).resolve().parent.parent
PAGE = "pages/5_Inside_the_network.py"
TINY_IMAGES, TINY_BATCH = 2000, 100  # 20 batches: snapshots after 1, 2, 4, 8, 16 and 20
TIMEOUT = 60

unit, trains, apptest, browser = (pytest.mark.unit, pytest.mark.trains, pytest.mark.apptest,
                                  pytest.mark.browser)


def random_net(model: str, seed: int = 0) -> inside.Network:
    return inside.random_network(model, layers_of(model), seed)


def save_weights(path: Path, model: str, arrays: dict, layers=None) -> Path:
    """A weights.npz as export_weights writes it, from plain arrays (no Keras)."""
    layers = layers if layers is not None else [(layer.kind, layer.kwargs) for layer in layers_of(model)]
    with open(path, "wb") as f:
        np.savez(f, **arrays, **{inside.LAYERS_KEY: np.array(inside.layers_json(model, layers))})
    return path


def arrays_of(net: inside.Network) -> dict:
    out = {}
    for layer in net.layers:
        if layer.kernel is not None:
            out[inside.weight_key(layer.index, layer.kind, "kernel")] = layer.kernel
            out[inside.weight_key(layer.index, layer.kind, "bias")] = layer.bias
    return out


# --- the numpy network ------------------------------------------------------------------


@unit
@pytest.mark.parametrize("model", MODELS)
def test_every_layer_has_the_shape_of_the_model_summary(model):
    trace = random_net(model).forward(np.zeros((3, NUM_PIXELS), np.float32))
    shapes = [tuple(output.shape) for output in trace.outputs]
    assert shapes == [(3, *row["output_shape"][1:]) for row in summary(model)]
    assert np.allclose(trace.probabilities.sum(axis=1), 1, atol=1e-5)


@unit
@pytest.mark.parametrize("model", MODELS)
def test_input_gradient_matches_finite_differences(model):
    net = random_net(model, seed=1)
    rng = np.random.default_rng(0)
    # Noise images, not digits: a blank background makes many equal values in max-pooling
    # windows, where the derivative has a kink and finite differences disagree by design.
    x = rng.random((4, NUM_PIXELS))  # float64: the whole pass runs in float64
    direction = rng.normal(size=x.shape)
    contrast = np.zeros((4, NUM_CLASSES))
    contrast[:, 3], contrast[:, 5] = 1, -1
    gradient = net.input_gradient(net.forward(x), contrast)
    h = 1e-6

    def margin(v):
        logits = net.forward(v).logits
        return logits[:, 3] - logits[:, 5]

    numeric = (margin(x + h * direction) - margin(x - h * direction)) / (2 * h)
    analytic = (gradient * direction).sum(axis=1)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def fast_cnn_arrays(net: inside.Network) -> dict:
    """The arrays of a network with batch norms, as Keras saves them (gamma, beta, moving
    mean and variance), giving the same scale and shift."""
    out = arrays_of(net)
    for layer in net.layers:
        if layer.kind == "BatchNormalization":
            epsilon = layer.settings.get("epsilon", 1e-3)
            for name, value in (("gamma", layer.scale), ("beta", layer.shift),
                                ("moving_mean", np.zeros_like(layer.scale)),
                                ("moving_variance", np.full_like(layer.scale, 1 - epsilon))):
                out[inside.weight_key(layer.index, layer.kind, name)] = value
    return {key: value for key, value in out.items() if value is not None}


@unit
def test_batch_norms_round_trip_and_broken_ones_raise_a_clear_error(tmp_path):
    net = random_net("fast_cnn")
    arrays = fast_cnn_arrays(net)
    loaded = inside.load_network(save_weights(tmp_path / "w.npz", "fast_cnn", arrays))
    x = np.random.default_rng(0).random((2, NUM_PIXELS), np.float32)
    np.testing.assert_allclose(loaded.predict_proba(x), net.predict_proba(x), atol=1e-6)
    key = inside.weight_key(3, "BatchNormalization", "moving_variance")
    for change, words in (
            (lambda a: a.pop(key), "the array 3/BatchNormalization/moving_variance is missing"),
            (lambda a: a.update({key: -a[key]}), "moving_variance holds negative values"),
            (lambda a: a.update({key: a[key][:5]}), "moving_variance has shape (5,), expected (16,)")):
        broken = dict(arrays)
        change(broken)
        with pytest.raises(InsideError, match=re.escape(words)):
            inside.load_network(save_weights(tmp_path / "b.npz", "fast_cnn", broken))


@unit
def test_weights_round_trip_through_a_file(tmp_path):
    net = random_net("cnn")
    loaded = inside.load_network(save_weights(tmp_path / "w.npz", "cnn", arrays_of(net)))
    assert loaded.model == "cnn" and [layer.name for layer in loaded.layers] == [
        "reshape", "conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "flatten",
        "dropout", "dense"]
    x = np.random.default_rng(0).random((2, NUM_PIXELS), np.float32)
    assert np.array_equal(loaded.predict_proba(x), net.predict_proba(x))


def broken_files():
    """(name, change to the MLP's arrays and layers, words the error must contain)."""
    def drop(key):
        return lambda arrays, layers: (arrays.pop(key), (arrays, layers))[1]

    def put(key, value):
        return lambda arrays, layers: (arrays.__setitem__(key, value), (arrays, layers))[1]

    return [
        ("missing kernel", drop("1/Dense/kernel"), "1/Dense/kernel is missing"),
        ("wrong kernel shape", put("1/Dense/kernel", np.zeros((512, 7), np.float32)),
         "does not fit"),
        ("wrong bias shape", put("0/Dense/bias", np.zeros(3, np.float32)), "bias shape"),
        ("integer weights", put("0/Dense/bias", np.zeros(512, np.int32)), "not floating point"),
        ("nan", put("2/Dense/bias", np.full(10, np.nan, np.float32)), "NaN"),
        ("extra array", put("9/Dense/kernel", np.zeros(2, np.float32)), "unexpected arrays"),
        ("unknown kind", lambda arrays, layers: (arrays, [("LSTM", {}), *layers]), "not supported"),
        ("unknown activation", lambda arrays, layers: (
            arrays, [(layers[0][0], {**layers[0][1], "activation": "gelu"}), *layers[1:]]), "gelu"),
        ("not ten outputs", lambda arrays, layers: (arrays, layers[:-1]),
         "not the 10 digit probabilities"),
    ]


@unit
@pytest.mark.parametrize("name, change, words", broken_files(), ids=[b[0] for b in broken_files()])
def test_broken_weights_raise_a_clear_error(tmp_path, name, change, words):
    arrays, layers = change(arrays_of(random_net("seed_mlp")),
                            [(layer.kind, layer.kwargs) for layer in layers_of("seed_mlp")])
    path = save_weights(tmp_path / "weights.npz", "seed_mlp", arrays, layers)
    with pytest.raises(InsideError, match="weights.npz") as error:
        inside.load_network(path)
    assert words in str(error.value)


@unit
def test_files_that_are_not_weights(tmp_path, monkeypatch):
    junk = tmp_path / "weights.npz"
    junk.write_bytes(b"not a zip at all" * 10)
    with pytest.raises(InsideError, match="not a readable npz"):
        inside.load_network(junk)
    with pytest.raises(InsideError, match="cannot be read"):
        inside.load_network(tmp_path / "missing.npz")
    with open(junk, "wb") as f:  # arrays of Python objects need pickle: refused
        np.savez(f, **{inside.LAYERS_KEY: np.array([{"a": 1}], dtype=object)})
    with pytest.raises(InsideError):
        inside.load_network(junk)
    bomb = tmp_path / "bomb.npz"
    with open(bomb, "wb") as f:
        np.savez_compressed(f, big=np.zeros(2**20, np.float32))  # 4 MB unpacked, 4 kB stored
    monkeypatch.setattr(network, "MAX_WEIGHTS_BYTES", 2**20)
    assert bomb.stat().st_size < 2**20
    with pytest.raises(InsideError, match="unpacked: too large"):
        inside.load_network(bomb)
    with pytest.raises(InsideError, match="more than the"):
        inside.load_network(save_weights(tmp_path / "big.npz", "seed_mlp",
                                         arrays_of(random_net("seed_mlp"))))


@pytest.fixture(scope="module")
def valid_weights_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "weights.npz"
    return save_weights(path, "cnn", arrays_of(random_net("cnn"))).read_bytes()


@unit
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damage_to_a_weights_file_loads_or_raises_inside_error(tmp_path, valid_weights_bytes,
                                                                   data):
    raw = bytearray(valid_weights_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "random"]))
    if kind == "flip":
        for position in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            raw[position] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    else:
        raw = bytearray(data.draw(st.binary(max_size=2000)))
    path = tmp_path / "weights.npz"
    path.write_bytes(bytes(raw))
    try:
        net = inside.load_network(path)
    except InsideError:
        return
    assert net.predict_proba(np.zeros((1, NUM_PIXELS), np.float32)).shape == (1, NUM_CLASSES)


# --- try to fool it ---------------------------------------------------------------------


@unit
@pytest.mark.parametrize("dx, dy", [(3, 0), (-2, 0), (0, 4), (0, -3), (2, -2)])
def test_shifting_by_k_pixels_moves_the_centre_of_mass_by_k(mnist, dx, dy):
    # The first validation digit with 4 blank pixels on every side, so no ink leaves.
    index = next(i for i, image in enumerate(mnist.x_valid)
                 if not (image[:4].any() or image[-4:].any() or image[:, :4].any()
                         or image[:, -4:].any()))
    image = normalize(mnist.x_valid[index])
    before = inside.center_of_mass(image)
    after = inside.center_of_mass(inside.perturb(image, Perturbation(shift_x=dx, shift_y=dy)))
    assert after == pytest.approx((before[0] + dy, before[1] + dx), abs=1e-9)


@unit
def test_rotation_thickness_and_identity(mnist):
    image = normalize(mnist.x_valid[1])
    assert np.array_equal(inside.perturb(image, Perturbation()), image)
    turned = inside.perturb(image, Perturbation(rotation=90))
    np.testing.assert_allclose(turned, np.rot90(image), atol=1e-5)  # anticlockwise, about the centre
    ink = image.sum()
    assert inside.perturb(image, Perturbation(thickness=1)).sum() > ink * 1.3
    assert inside.perturb(image, Perturbation(thickness=-1)).sum() < ink * 0.7
    with pytest.raises(ValueError, match="shift_x must be from -8 to 8"):
        Perturbation(shift_x=9)
    with pytest.raises(ValueError, match="noise"):
        Perturbation(noise=-0.1)


@unit
@settings(max_examples=80, deadline=None)
@given(shift_x=st.integers(-inside.MAX_SHIFT, inside.MAX_SHIFT),
       shift_y=st.integers(-inside.MAX_SHIFT, inside.MAX_SHIFT),
       rotation=st.floats(-inside.MAX_ROTATION, inside.MAX_ROTATION),
       thickness=st.integers(-inside.MAX_THICKNESS, inside.MAX_THICKNESS),
       noise=st.floats(0, inside.MAX_NOISE), seed=st.integers(0, 2**32 - 1),
       index=st.integers(0, 99))
def test_every_change_is_an_image_in_0_1(shift_x, shift_y, rotation, thickness, noise, seed, index):
    image = np.random.default_rng(index).random((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    out = inside.perturb(image, Perturbation(shift_x, shift_y, rotation, thickness, noise, seed))
    assert out.shape == (IMAGE_SIZE, IMAGE_SIZE) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


@unit
@pytest.mark.parametrize("model", MODELS)
def test_each_breaking_point_is_the_smallest_change_that_flips_the_prediction(model, mnist):
    net = random_net(model, seed=2)
    image = normalize(mnist.x_valid[3])
    digit, points = inside.breaking_points(net, image)
    assert digit == net.predict_proba(image.reshape(1, -1)).argmax()
    assert [p.change for p in points] == [scan[0] for scan in inside.SCANS]
    for point, (_, name, amounts, _) in zip(points, inside.SCANS, strict=True):
        predicted = [int(net.predict_proba(inside.perturb(image, Perturbation(**{name: a}))
                                           .reshape(1, -1)).argmax()) for a in amounts]
        flips = [a for a, p in zip(amounts, predicted, strict=True) if p != digit]
        assert point.amount == (flips[0] if flips else None)
        if flips:
            assert point.becomes == predicted[amounts.index(flips[0])]
            assert f"becomes a {point.becomes}" in point.sentence(digit)
        else:
            assert "still a" in point.sentence(digit)


# --- snapshots and pictures without Keras -----------------------------------------------


@unit
def test_sample_is_four_of_each_digit_in_rows_of_0_to_9(mnist):
    indices = inside.sample_indices(mnist.y_valid)
    assert len(indices) == 40 and len(set(indices)) == 40
    assert list(mnist.y_valid[indices]) == list(range(10)) * 4


@unit
def test_snapshots_tolerate_junk_and_half_written_files(tmp_path):
    folder = tmp_path / inside.SNAPSHOTS_DIR
    for step in (4, 1, 2):
        inside.write_npz_atomically(folder / inside.snapshot_name(step), {
            "step": np.int64(step), "epoch": np.float64(step / 4), "layer": np.array("dense"),
            "units": np.arange(3), "weights": np.zeros((3, 28, 28), np.float16),
            "probabilities": np.full((40, 10), 0.1, np.float16)})
    (folder / inside.snapshot_name(8)).write_bytes((folder / inside.snapshot_name(4))
                                                  .read_bytes()[:300])  # half written
    (folder / inside.snapshot_name(16)).write_bytes(b"junk")
    (folder / "notes.txt").write_text("hello")
    (folder / ".step-0000032.npz.123.tmp").write_bytes(b"being written")
    inside.write_npz_atomically(folder / inside.START_FILE, {
        "layer": np.array("dense"), "kernel": np.ones((NUM_PIXELS, 3), np.float16)})
    wrong = io.BytesIO()
    np.savez(wrong, step=np.int64(5), weights=np.zeros(3))
    (folder / inside.snapshot_name(5)).write_bytes(wrong.getvalue())
    snapshots, skipped = inside.read_snapshots(tmp_path)
    assert [s.step for s in snapshots] == [1, 2, 4]
    assert sorted(skipped) == ["notes.txt", "step-0000005.npz", "step-0000008.npz",
                               "step-0000016.npz"]
    assert inside.read_snapshots(tmp_path / "nowhere") == ([], [])
    assert inside.read_sample(tmp_path) is None
    assert inside.read_start_kernel(tmp_path, (NUM_PIXELS, 3)).dtype == np.float32
    assert inside.read_start_kernel(tmp_path, (NUM_PIXELS, 512)) is None  # another model's
    (folder / inside.START_FILE).write_bytes(b"junk")
    assert inside.read_start_kernel(tmp_path) is None


@unit
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=3000))
def test_any_bytes_as_a_snapshot_are_skipped_or_read(tmp_path, raw):
    folder = tmp_path / inside.SNAPSHOTS_DIR
    folder.mkdir(exist_ok=True)
    (folder / inside.snapshot_name(7)).write_bytes(raw)
    snapshots, skipped = inside.read_snapshots(tmp_path)
    assert [s.step for s in snapshots] + skipped in ([7], ["step-0000007.npz"])


SNAPSHOT_KEYS = ["step", "epoch", "layer", "units", "weights", "probabilities", "images",
                 "labels", "kernel"]


@unit
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(contents=st.dictionaries(st.sampled_from(SNAPSHOT_KEYS), npst.arrays(
    st.sampled_from([np.int64, np.float16, np.float64, np.uint8, np.dtype("<U3"), np.bool_]),
    npst.array_shapes(min_dims=0, max_dims=3, max_side=4)), max_size=9))
def test_any_arrays_in_the_snapshot_files_are_read_or_skipped(tmp_path, contents):
    folder = tmp_path / inside.SNAPSHOTS_DIR
    for name in (inside.snapshot_name(2), inside.SAMPLE_FILE, inside.START_FILE):
        inside.write_npz_atomically(folder / name, contents)
    snapshots, skipped = inside.read_snapshots(tmp_path)
    assert [s.step for s in snapshots] + skipped in ([2], ["step-0000002.npz"])
    sample = inside.read_sample(tmp_path)
    assert sample is None or sample.images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE)
    start = inside.read_start_kernel(tmp_path)
    assert start is None or start.dtype == np.float32


@unit
@pytest.mark.parametrize("model", MODELS)
def test_input_view_pictures_decode_to_their_layers(model, mnist):
    from PIL import Image

    net = random_net(model)
    x = normalize(flatten(mnist.x_valid[:1]))[0]
    view = inside_plots.input_view(net, x)
    assert view.digit == int(net.predict_proba(x[None]).argmax())
    sources = re.findall(r'src="data:image/png;base64,([^"]+)"', view.forward_html)
    sizes = [Image.open(io.BytesIO(base64.b64decode(s))).size for s in sources]
    assert sizes[0] == (IMAGE_SIZE, IMAGE_SIZE)
    drawn = [layer for layer in net.layers[:-1] if layer.kind in ("Dense", "Conv2D", "MaxPooling2D")
             or (layer.kind == "Activation" and len(layer.output_shape) == 3)]
    assert len(sizes) == 1 + len(drawn)
    assert "probability of each digit" in view.forward_html
    assert view.units_html.count("<figure") == inside_plots.TOP_UNITS


@unit
def test_units_grid_frames_the_marked_units():
    grid = inside_plots.units_grid(np.linspace(0, 1, 64, dtype=np.float32), cols=8, cell=4,
                                   marked=np.array([63]))
    pitch = 5
    frame = grid[7 * pitch:8 * pitch + 1, 7 * pitch:8 * pitch + 1]
    assert (frame[0] == inside_plots.MARK).all() and (frame[:, -1] == inside_plots.MARK).all()
    assert not (grid[:pitch, :pitch] == inside_plots.MARK).all(axis=-1).any()


# --- against Keras: tiny real fits in this process --------------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, mnist):
    """Per model: a tiny Keras fit with FeatureSnapshots, exported with export_weights."""
    import keras

    from mnist_core.training.fit import build_model
    from mnist_core.training.snapshots import FeatureSnapshots, export_weights

    x = normalize(flatten(mnist.x_train[:TINY_IMAGES]))
    y = categorize(mnist.y_train[:TINY_IMAGES])
    sample = inside.sample_indices(mnist.y_valid)
    x_sample = normalize(flatten(mnist.x_valid[sample]))
    out = {}
    for name in MODELS:
        keras.utils.set_random_seed(0)
        run_dir = tmp_path_factory.mktemp(name)
        model = build_model(name)  # the worker's own build, float32
        model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
        first = next(layer for layer in model.layers if layer.weights)
        start = keras.ops.convert_to_numpy(first.kernel).copy()
        callback = FeatureSnapshots(run_dir, x_sample, TINY_IMAGES // TINY_BATCH,
                                    y_sample=mnist.y_valid[sample])
        model.fit(x, y, batch_size=TINY_BATCH, epochs=1, callbacks=[callback], verbose=0)
        export_weights(model, run_dir / inside.WEIGHTS_FILE)
        out[name] = (model, run_dir, inside.load_network(run_dir / inside.WEIGHTS_FILE), start)
    return keras, out


def keras_layer_outputs(keras, model, x) -> list[np.ndarray]:
    """Every layer's output of a Keras model for `x`, as float32 arrays (the reference)."""
    probe = keras.Model(model.inputs[0], [layer.output for layer in model.layers])
    return [keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")) for out in probe(x)]


@trains
@pytest.mark.parametrize("model", MODELS)
def test_numpy_activations_match_keras_layer_by_layer(fitted, mnist, model):
    keras, models = fitted
    keras_net, _, net, _ = models[model]
    x = normalize(flatten(mnist.x_valid[:64]))
    expected = keras_layer_outputs(keras, keras_net, x)
    ours = net.forward(x).outputs
    assert len(ours) == len(expected) == len(keras_net.layers)
    for layer, mine, theirs in zip(net.layers, ours, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, atol=1e-4, rtol=1e-4, err_msg=layer.name)


@trains
@pytest.mark.parametrize("model", MODELS)
def test_a_mixed_precision_model_is_served_close_to_its_own_activations(tmp_path, mnist, model):
    """The worker trains in bfloat16 where the CPU has it and saves float32 weights: the
    server's float32 pass stays within bfloat16's precision of the trained model's layers."""
    import keras

    from mnist_core.training.fit import build_model
    from mnist_core.training.snapshots import export_weights

    keras.utils.set_random_seed(0)
    mixed = build_model(model, "mixed_bfloat16")
    mixed.compile(optimizer="adam", loss="categorical_crossentropy")
    mixed.fit(normalize(flatten(mnist.x_train[:TINY_IMAGES])),
              categorize(mnist.y_train[:TINY_IMAGES]), batch_size=TINY_BATCH, epochs=1, verbose=0)
    served = build_model(model, "float32")  # as the worker saves it
    served.set_weights(mixed.get_weights())
    export_weights(served, tmp_path / inside.WEIGHTS_FILE)
    net = inside.load_network(tmp_path / inside.WEIGHTS_FILE)
    x = normalize(flatten(mnist.x_valid[:64]))
    expected = keras_layer_outputs(keras, mixed, x)
    for layer, mine, theirs in zip(net.layers, net.forward(x).outputs, expected, strict=True):
        scale = max(float(np.abs(theirs).max()), 1.0)  # bfloat16 keeps ~3 significant digits
        np.testing.assert_allclose(mine / scale, theirs / scale, atol=2e-2, err_msg=layer.name)
    assert (net.forward(x).outputs[-1].argmax(1) == expected[-1].argmax(1)).mean() >= 0.95


@trains
@pytest.mark.parametrize("model", MODELS)
def test_saliency_gradient_is_the_gradient_tensorflow_computes(fitted, mnist, model):
    import tensorflow as tf

    keras, models = fitted
    keras_net, _, net, _ = models[model]
    # Where a pooling window holds exactly equal maxima (the blank background: relu(bias)),
    # which one gets the gradient is the kernel's choice, and oneDNN's differs between CPUs.
    # Faint noise makes every window's maximum unique.
    x = normalize(flatten(mnist.x_valid[:8]))
    x += np.random.default_rng(0).uniform(0, 0.01, x.shape).astype(np.float32)
    digits, rivals = np.arange(8) % 10, (np.arange(8) + 3) % 10
    contrast = np.zeros((8, NUM_CLASSES), np.float32)
    contrast[np.arange(8), digits], contrast[np.arange(8), rivals] = 1, -1
    last = keras_net.layers[-1]
    last.activation = keras.activations.linear  # the logits, as our saliency uses
    try:
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            score = tf.reduce_sum(keras_net(inputs) * contrast)
        expected = tape.gradient(score, inputs).numpy()
    finally:
        last.activation = keras.activations.softmax
    np.testing.assert_allclose(net.input_gradient(net.forward(x), contrast), expected, atol=1e-4)


@trains
@pytest.mark.parametrize("model", MODELS)
def test_saliency_is_on_the_ink_and_its_top_pixels_matter_most(fitted, mnist, model):
    _, models = fitted
    net = models[model][2]
    x_valid = normalize(flatten(mnist.x_valid[:200]))
    probabilities = net.predict_proba(x_valid)
    clear = int(np.argmax(probabilities[np.arange(200), mnist.y_valid[:200]]))  # its surest digit
    x = x_valid[clear]
    result = inside.saliency(net, x)
    assert result.digit == mnist.y_valid[clear]
    ink = x.reshape(IMAGE_SIZE, IMAGE_SIZE) > 0.5
    background = x.reshape(IMAGE_SIZE, IMAGE_SIZE) == 0
    assert np.abs(result.attribution[ink]).mean() > 0 == np.abs(result.attribution[background]).max()

    def margin(v):
        logits = net.forward(v).logits
        return logits[:, result.digit] - logits[:, result.rival]

    # Erasing the 15 pixels that voted most for the digit costs it more than erasing 15
    # random inked pixels.
    top = np.argsort(-result.attribution.reshape(-1))[:15]
    erased_top = x.copy()
    erased_top[top] = 0
    rng = np.random.default_rng(0)
    inked = np.flatnonzero(x > 0.5)
    erased_random = np.repeat(x[None], 20, axis=0)
    for row in erased_random:
        row[rng.choice(inked, 15, replace=False)] = 0
    base = margin(x[None])[0]
    assert base - margin(erased_top[None])[0] > (base - margin(erased_random)).mean()


@trains
@pytest.mark.parametrize("model", MODELS)
def test_snapshots_are_written_at_log_spaced_steps_and_epoch_ends(fitted, mnist, model, tmp_path):
    from mnist_core.training.snapshots import snapshot_steps

    keras, models = fitted
    keras_net, run_dir, _, start = models[model]
    steps_per_epoch = TINY_IMAGES // TINY_BATCH
    snapshots, skipped = inside.read_snapshots(run_dir)
    assert [s.step for s in snapshots] == snapshot_steps(steps_per_epoch, steps_per_epoch) == [
        1, 2, 4, 8, 16, 20]
    assert skipped == [] and snapshots[-1].epoch == 1.0 and snapshots[0].epoch == 0.05
    sample = inside.read_sample(run_dir)
    indices = inside.sample_indices(mnist.y_valid)
    assert np.array_equal(sample.images, mnist.x_valid[indices])
    assert np.array_equal(sample.labels, mnist.y_valid[indices])
    # The last snapshot is the trained model: its units' weights and its predictions.
    last = snapshots[-1]
    first = next(layer for layer in keras_net.layers if layer.weights)
    assert first.name == last.layer
    kernel = keras.ops.convert_to_numpy(first.kernel)
    if model == "seed_mlp":
        expected = kernel[:, last.units].T.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        assert len(last.units) == inside.SNAPSHOT_UNITS
    else:
        expected = kernel[:, :, 0, :].transpose(2, 0, 1)
        assert list(last.units) == list(range(kernel.shape[-1]))  # every filter
    np.testing.assert_allclose(last.weights, expected, atol=1e-3, rtol=1e-2)
    predicted = keras_net.predict(normalize(flatten(sample.images)), verbose=0)
    np.testing.assert_allclose(last.probabilities, predicted, atol=2e-3)
    # The starting weights, saved before the first batch.
    np.testing.assert_allclose(inside.read_start_kernel(run_dir, kernel.shape), start,
                               atol=1e-3, rtol=1e-2)
    # A junk file among them is skipped; the others still read.
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / inside.SNAPSHOTS_DIR / inside.snapshot_name(3)).write_bytes(b"junk" * 10)
    again, skipped = inside.read_snapshots(copy)
    assert [s.step for s in again] == [1, 2, 4, 8, 16, 20] and skipped == ["step-0000003.npz"]


@trains
def test_export_names_every_array_by_layer_index_and_kind(fitted):
    _, models = fitted
    with zipfile.ZipFile(models["cnn"][1] / inside.WEIGHTS_FILE) as archive:
        names = sorted(name.removesuffix(".npy") for name in archive.namelist())
    assert names == ["1/Conv2D/bias", "1/Conv2D/kernel", "3/Conv2D/bias", "3/Conv2D/kernel",
                     "7/Dense/bias", "7/Dense/kernel", inside.LAYERS_KEY]
    with np.load(models["cnn"][1] / inside.WEIGHTS_FILE) as npz:
        layers = json.loads(str(npz[inside.LAYERS_KEY]))["layers"]
    assert [item["kind"] for item in layers] == [layer.kind for layer in layers_of("cnn")]


# --- the page ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A models folder with a tiny real MLP run and a tiny real CNN run, trained by the app's
    Trainer (2000 images, 1 epoch of 20 batches): the worker saves weights.npz and the
    snapshots itself."""
    from mnist_core.training.supervisor import Trainer

    root = tmp_path_factory.mktemp("inside-models")
    trainer = Trainer(root)
    ids = {}
    for name in MODELS:
        trainer.start(TrainConfig(model=name, epochs=1, train_size=TINY_IMAGES,
                                  batch_size=TINY_BATCH))
        snap = trainer.wait(timeout=300)
        assert snap.state == "finished", snap.error or snap.message
        ids[name] = snap.run_id
    return root, ids


@pytest.fixture()
def with_runs(models_dir, tiny_runs, fresh_server):
    shutil.copytree(tiny_runs[0], models_dir, dirs_exist_ok=True)
    return models_dir, tiny_runs[1]


def run_page(query: dict | None = None, session: dict | None = None) -> AppTest:
    app = app_run.open_app(PAGE, query, TIMEOUT)
    for key, value in (session or {}).items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def prediction(app: AppTest) -> int:
    return int(next(m.value for m in app.metric if m.label == "Prediction"))


def numpy_prediction(models_dir: Path, run_id: str, x: np.ndarray) -> int:
    net = inside.load_network(models_dir / run_id / inside.WEIGHTS_FILE)
    return int(net.predict_proba(np.asarray(x, np.float32).reshape(1, -1)).argmax())


@apptest
def test_page_without_a_model_says_to_train_one(models_dir, fresh_server):
    app = run_page()
    assert "no trained model yet" in app.warning[0].value


@apptest
@trains
def test_page_says_when_a_run_has_no_saved_weights(with_runs):
    models_dir, ids = with_runs
    for run_id in ids.values():
        (models_dir / run_id / inside.WEIGHTS_FILE).unlink()
    app = run_page()
    assert "this run has no saved weights: train a new one" in app.warning[0].value.lower()
    assert not [m for m in app.metric if m.label == "Prediction"]
    (models_dir / ids["cnn"] / inside.WEIGHTS_FILE).write_bytes(b"junk")
    app = run_page({"run": ids["cnn"]})
    assert "cannot be used" in app.error[0].value and "weights.npz" in app.error[0].value


@apptest
@trains
@pytest.mark.parametrize("model", MODELS)
def test_page_shows_an_mnist_image_inside_each_model(with_runs, mnist, model):
    models_dir, ids = with_runs
    app = run_page({"run": ids[model], "split": "x_valid", "index": "7"})
    x = normalize(mnist.x_valid[7]).reshape(-1)
    assert prediction(app) == numpy_prediction(models_dir, ids[model], x)
    assert app.number_input(key="inside_index").value == 7
    headers = [h.value for h in app.header]
    assert headers[:3] == ["Your input", "Layer by layer", "What the units look for"]
    assert headers[-1] == "Watch the features form" and headers[3].startswith("Why a ")
    steps = next(s for s in app.select_slider if s.label == "After how many batches")
    assert [int(step) for step in steps.options] == [1, 2, 4, 8, 16, 20]
    assert any("Where it breaks" in m.value for m in app.markdown)

    app.slider(key="inside_shift_x").set_value(3).run()
    shifted = inside.perturb(x.reshape(IMAGE_SIZE, IMAGE_SIZE), Perturbation(shift_x=3))
    assert prediction(app) == numpy_prediction(models_dir, ids[model], shifted)
    app.selectbox(key="inside_rival").set_value(4).run()
    assert not app.exception
    steps = next(s for s in app.select_slider if s.label == "After how many batches")
    steps.set_value(steps.options[0]).run()
    app.radio(key="inside_snapshot_view").set_value("the whole weights").run()
    app.radio(key="inside_units_view").set_value("the whole weights").run()
    assert not app.exception


@apptest
@trains
def test_page_picks_images_by_digit_and_at_random(with_runs, mnist):
    app = run_page({"split": "x_train"})
    app.selectbox(key="inside_digit").set_value(3).run()
    index = app.number_input(key="inside_index").value
    assert mnist.y_train[index] == 3
    next(b for b in app.button if b.label == "Random image").click().run()
    assert mnist.y_train[app.number_input(key="inside_index").value] == 3
    assert not app.exception


@apptest
@trains
def test_page_starts_from_the_last_drawing_on_draw(with_runs, mnist):
    models_dir, ids = with_runs
    x = normalize(flatten(mnist.x_valid[12:13]))  # (1, 784), as the Draw page stores it
    app = run_page(session={"draw_last_x": x})
    assert app.radio(key="inside_source").value == "My last drawing on Draw"
    # The run Draw uses: the newest healthy one (a 20-batch fast_cnn is not yet: its batch
    # norms' moving statistics have not caught up with its weights).
    current = ModelStore(models_dir).current().run_id
    assert prediction(app) == numpy_prediction(models_dir, current, x)


# --- in Chromium ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_runs):
    models = tmp_path_factory.mktemp("inside-browser-models")
    shutil.copytree(tiny_runs[0], models, dirs_exist_ok=True)
    app = e2e.AppServer(models, tmp_path_factory.mktemp("server") / "streamlit.log").start()
    yield app.url, tiny_runs[1]
    app.stop()


def wait_for_prediction(page, timeout: float = 60) -> str:
    """The Prediction metric's value once the page shows one (polled, with a deadline)."""
    metric = page.locator('[data-testid="stMetric"]', has_text="Prediction")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric.count():
            value = metric.locator('[data-testid="stMetricValue"]').inner_text().strip()
            if value.isdigit():
                return value
        page.wait_for_timeout(100)
    pytest.fail("no prediction appeared")


def choose_drawing(page) -> None:
    page.get_by_text("Draw here", exact=True).click()
    page.locator("canvas.upper-canvas").wait_for()


def assert_sections_render(page) -> None:
    page.get_by_role("heading", name="Layer by layer").wait_for()
    page.get_by_role("heading", name="Watch the features form").wait_for()
    assert page.locator('img[alt="activations of dense"]').count() == 1
    assert page.locator('img[alt^="which ink made it a"]').count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.errors == []


@browser
@trains
def test_a_drawn_digit_goes_through_the_network_in_chromium(server, browser):
    url, ids = server
    page = e2e.new_page(browser, 1400, 1800)
    try:
        e2e.open_page(page, f"{url}/Inside_the_network?run={ids['seed_mlp']}")
        wait_for_prediction(page)  # the default input, an MNIST image
        choose_drawing(page)
        e2e.draw(page, 7)
        wait_for_prediction(page)
        page.get_by_text("your drawing").first.wait_for()
        assert_sections_render(page)
    finally:
        page.context.close()


@browser
@trains
def test_on_a_phone_a_finger_drawn_digit_and_nothing_wider_than_the_screen(server, browser):
    url, ids = server
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    try:
        e2e.open_page(page, f"{url}/Inside_the_network?run={ids['seed_mlp']}")
        wait_for_prediction(page)
        choose_drawing(page)
        e2e.draw_by_touch(page, 1)
        page.get_by_text("your drawing").first.wait_for()
        wait_for_prediction(page)
        assert_sections_render(page)
        too_wide = page.evaluate("""() => [...document.querySelectorAll(
                '[data-testid="stMain"] img, [data-testid="stMain"] canvas')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.alt || e.tagName)""")
        assert too_wide == []
        main = page.locator('[data-testid="stMain"]')
        assert main.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    finally:
        context.close()


@apptest
@trains
def test_while_a_training_runs_the_page_follows_its_newest_snapshot(with_runs, monkeypatch):
    from mnist_core.training import supervisor
    from mnist_core.training.follow import Snapshot

    models_dir, ids = with_runs
    live = ids["cnn"]  # stands in for the run being trained: it has snapshots up to step 20
    monkeypatch.setattr(supervisor.Trainer, "snapshot",
                        lambda self: Snapshot(state="running", run_id=live))
    app = run_page({"run": ids["seed_mlp"]})
    assert any("Live: a training is running" in c.value and "after 20 batches" in c.value
               for c in app.caption)
    assert not [s for s in app.select_slider if s.label == "After how many batches"]
    html = " ".join(element.proto.body for element in app.get("html"))
    assert "32 filters of conv2d" in html  # the live CNN's filters, not the chosen MLP's units
