"""A saved run's weights (`weights.npz`) as a network run layer by layer in numpy.

    x (N, 784) float32 in [0, 1] -> layer 0 output -> ... -> (N, 10) probabilities

`weights.npz` holds one JSON string under `LAYERS_KEY` (the model's name and, per layer,
its kind and the Keras settings that matter for the forward pass) and the arrays under
`"<layer index>/<kind>/kernel"` and `"<layer index>/<kind>/bias"`
(`mnist_core.training.snapshots.export_weights` writes it). Loading checks every array
against the layer list and the shapes flowing through it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_core.data import NUM_CLASSES, NUM_PIXELS
from mnist_core.inside.checks import (
    NORM_ARRAYS,
    SUPPORTED,
    check_settings,
    checked_array,
    norm_scale_shift,
    output_shape,
    pair,
)
from mnist_core.inside.files import InsideError, read_npz
from mnist_core.models import Layer

LAYERS_KEY = "layers.json"  # the layer list, as JSON text
MAX_WEIGHTS_BYTES = 64 * 2**20  # the notebook's MLP is 2.7 MB; 64 MB is a generous bound

# The Keras settings kept per layer; anything else in a layer's config does not change
# what it computes at inference (names, initializers, regularizers).
KEPT_SETTINGS = ("units", "activation", "use_bias", "filters", "kernel_size", "strides",
                 "padding", "data_format", "dilation_rate", "groups", "pool_size",
                 "target_shape", "rate", "epsilon", "center", "scale")


def weight_key(index: int, kind: str, name: str) -> str:
    """The npz key of one layer's array: "0/Dense/kernel"."""
    return f"{index}/{kind}/{name}"


@dataclass(frozen=True)
class NetLayer:
    """One layer, ready to run: its settings, arrays and the shapes it maps (batch left out)."""

    index: int
    kind: str
    name: str  # Keras's default name: dense, dense_1, conv2d, max_pooling2d, ...
    settings: dict
    input_shape: tuple
    output_shape: tuple
    kernel: np.ndarray | None = None  # Dense (in, units); Conv2D (kh, kw, in_channels, filters)
    bias: np.ndarray | None = None
    # BatchNormalization when predicting: x * scale + shift, per channel, (channels,) each.
    scale: np.ndarray | None = None
    shift: np.ndarray | None = None

    @property
    def activation(self) -> str:
        return self.settings.get("activation", "linear")

    @property
    def strides(self) -> tuple[int, int]:
        default = self.settings.get("pool_size", (1, 1))
        return pair(self.settings.get("strides") or default)


@dataclass
class Trace:
    """Every layer's output for a batch: `outputs[i]` is (N, *layers[i].output_shape) float32.

    `pre[i]` is the same layer before its activation (the logits, for the softmax layer).
    """

    x: np.ndarray  # (N, 784) float32
    outputs: list[np.ndarray] = field(default_factory=list)
    pre: list[np.ndarray] = field(default_factory=list)

    @property
    def probabilities(self) -> np.ndarray:
        return self.outputs[-1]

    @property
    def logits(self) -> np.ndarray:
        return self.pre[-1]


class Network:
    """A Sequential model from `mnist_core.models`, run in numpy with its saved weights."""

    def __init__(self, model: str, layers: list[NetLayer]):
        self.model = model
        self.layers = layers

    @classmethod
    def from_arrays(cls, model: str, specs: list[Layer], arrays: dict[str, np.ndarray],
                    source: str = "weights") -> Network:
        """Check every array against the layer list and the shapes flowing through it."""
        layers, shape, counts = [], (NUM_PIXELS,), {}
        expected_keys = set()
        for index, spec in enumerate(specs):
            where = f"{source}: layer {index} ({spec.kind})"
            if spec.kind not in SUPPORTED:
                raise InsideError(f"{where}: this kind of layer is not supported "
                                  f"(supported: {', '.join(SUPPORTED)})")
            settings = {k: v for k, v in spec.kwargs.items() if k in KEPT_SETTINGS}
            check_settings(settings, where)
            kernel = bias = scale = shift = None
            if spec.kind == "BatchNormalization":
                keys = [weight_key(index, spec.kind, name) for name in NORM_ARRAYS]
                expected_keys.update(keys)
                saved = [checked_array(arrays, key, where) for key in keys]
                scale, shift = norm_scale_shift(settings, saved, shape, where)
            if spec.kind in ("Dense", "Conv2D"):
                kernel = checked_array(arrays, weight_key(index, spec.kind, "kernel"), where)
                expected_keys.add(weight_key(index, spec.kind, "kernel"))
                if settings.get("use_bias", True):
                    bias = checked_array(arrays, weight_key(index, spec.kind, "bias"), where)
                    expected_keys.add(weight_key(index, spec.kind, "bias"))
            out = output_shape(spec.kind, settings, shape, kernel, bias, where)
            base = _keras_name(spec.kind)
            counts[base] = counts.get(base, 0) + 1
            name = base if counts[base] == 1 else f"{base}_{counts[base] - 1}"
            layers.append(NetLayer(index, spec.kind, name, settings, shape, out, kernel, bias,
                                   scale, shift))
            shape = out
        if shape != (NUM_CLASSES,):
            raise InsideError(f"{source}: the last layer gives shape {shape}, "
                              f"not the {NUM_CLASSES} digit probabilities")
        extra = sorted(set(arrays) - expected_keys)
        if extra:
            raise InsideError(f"{source}: unexpected arrays {', '.join(extra[:5])}")
        return cls(model, layers)

    def forward(self, x: np.ndarray) -> Trace:
        """x (N, 784) float in [0, 1] -> every layer's output; Dropout is off, as in predict.

        Computed in float32, or in float64 when x is float64 (for exact gradient checks).
        """
        x = np.asarray(x)
        x = x.astype(np.float64 if x.dtype == np.float64 else np.float32).reshape(-1, NUM_PIXELS)
        trace = Trace(x)
        h = x
        for layer in self.layers:
            pre = _linear(layer, h)
            h = _activate(pre, layer.activation)
            trace.pre.append(pre)
            trace.outputs.append(h)
        return trace

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """x (N, 784) -> (N, 10) float32 probabilities, as `Classifier.predict_proba`."""
        return self.forward(x).probabilities

    def input_gradient(self, trace: Trace, d_logits: np.ndarray) -> np.ndarray:
        """d(sum(d_logits * logits)) / dx for each input: (N, 784), in the trace's precision.

        The backward pass of `forward`, layer by layer, from the last layer's
        pre-activation (so softmax's saturation does not flatten the answer).
        """
        grad = np.asarray(d_logits, trace.x.dtype).reshape(trace.logits.shape)
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            if i < len(self.layers) - 1:
                grad = _activation_backward(grad, trace.outputs[i], layer.activation)
            layer_input = trace.outputs[i - 1] if i else trace.x
            grad = _linear_backward(layer, grad, layer_input)
        return grad.reshape(-1, NUM_PIXELS)

    @property
    def first_kernel_layer(self) -> NetLayer:
        return next(layer for layer in self.layers if layer.kernel is not None)


def load_network(path: Path | str) -> Network:
    """A run's `weights.npz`, checked: size, arrays, layer kinds and every shape."""
    path = Path(path)
    arrays = read_npz(path, MAX_WEIGHTS_BYTES)
    spec_text = arrays.pop(LAYERS_KEY, None)
    if spec_text is None or spec_text.dtype.kind != "U" or spec_text.ndim != 0:
        raise InsideError(f"{path.name}: no {LAYERS_KEY} describing the layers")
    try:
        spec = json.loads(str(spec_text[()]))
        model = str(spec["model"])
        specs = [Layer(str(item["kind"]), dict(item.get("settings", {})))
                 for item in spec["layers"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InsideError(f"{path.name}: {LAYERS_KEY} is unreadable ({exc})") from None
    return Network.from_arrays(model, specs, arrays, source=path.name)


def layers_json(model: str, layers: list[tuple[str, dict]]) -> str:
    """The `LAYERS_KEY` text for a model name and its (kind, Keras config) pairs."""
    return json.dumps({"model": model, "layers": [
        {"kind": kind, "settings": {k: _plain(v) for k, v in config.items() if k in KEPT_SETTINGS}}
        for kind, config in layers
    ]})


def random_network(model: str, specs: list[Layer], seed: int = 0) -> Network:
    """An untrained network with He-initialised weights: for benchmarks and tests without Keras."""
    rng = np.random.default_rng(seed)
    arrays, shape = {}, (NUM_PIXELS,)
    for index, spec in enumerate(specs):
        kw = spec.kwargs
        if spec.kind == "Dense":
            kernel_shape = (int(np.prod(shape)), kw["units"])
        elif spec.kind == "Conv2D":
            kernel_shape = (*pair(kw["kernel_size"]), shape[-1], kw["filters"])
        else:
            kernel_shape = None
        if spec.kind == "BatchNormalization":  # statistics as a few batches would leave them
            channels = shape[-1]
            for name, low, high in zip(NORM_ARRAYS, (0.5, -0.1, -0.1, 0.5), (1.5, 0.1, 0.1, 2.0),
                                       strict=True):
                arrays[weight_key(index, spec.kind, name)] = (
                    rng.uniform(low, high, channels).astype(np.float32))
        if kernel_shape is not None:
            fan_in = int(np.prod(kernel_shape[:-1]))
            arrays[weight_key(index, spec.kind, "kernel")] = (
                rng.normal(0, math.sqrt(2 / fan_in), kernel_shape).astype(np.float32))
            if kw.get("use_bias", True):
                arrays[weight_key(index, spec.kind, "bias")] = (
                    rng.normal(0, 0.01, kernel_shape[-1]).astype(np.float32))
        settings = {k: v for k, v in kw.items() if k in KEPT_SETTINGS}
        shape = output_shape(spec.kind, settings, shape, arrays.get(weight_key(
            index, spec.kind, "kernel")), arrays.get(weight_key(index, spec.kind, "bias")), "")
    return Network.from_arrays(model, specs, arrays, source=f"random {model}")


def _plain(value):
    """Keras config values as JSON: tuples become lists."""
    return list(value) if isinstance(value, tuple) else value


def _keras_name(kind: str) -> str:
    return {"Conv2D": "conv2d", "MaxPooling2D": "max_pooling2d",
            "BatchNormalization": "batch_normalization"}.get(kind, kind.lower())


def _linear(layer: NetLayer, h: np.ndarray) -> np.ndarray:
    """The layer without its activation: (N, *input_shape) -> (N, *output_shape)."""
    n = h.shape[0]
    if layer.kind == "Dense":
        out = h @ layer.kernel
        return out + layer.bias if layer.bias is not None else out
    if layer.kind == "Conv2D":
        cols = _im2col(_pad(layer, h), layer.kernel.shape[:2], layer.strides)
        out = cols @ layer.kernel.reshape(-1, layer.kernel.shape[-1])
        out = out.reshape(n, *layer.output_shape)
        return out + layer.bias if layer.bias is not None else out
    if layer.kind == "MaxPooling2D":
        return np.maximum.reduce(_pool_windows(layer, h))
    if layer.kind in ("Reshape", "Flatten"):
        return h.reshape(n, *layer.output_shape)
    if layer.kind == "BatchNormalization":
        return h * layer.scale + layer.shift
    return h  # Dropout: identity when predicting; Activation: only its activation


def _linear_backward(layer: NetLayer, grad: np.ndarray, layer_input: np.ndarray) -> np.ndarray:
    """d loss / d layer input, given d loss / d (layer output before activation)."""
    n = grad.shape[0]
    if layer.kind == "Dense":
        return grad @ layer.kernel.T
    if layer.kind == "Conv2D":
        (kh, kw, c, f), (sh, sw) = layer.kernel.shape, layer.strides
        oh, ow = layer.output_shape[:2]
        cols = (grad.reshape(-1, f) @ layer.kernel.reshape(-1, f).T).reshape(n, oh, ow, kh, kw, c)
        padded = np.zeros_like(_pad(layer, layer_input))
        for i in range(kh):
            for j in range(kw):
                padded[:, i:i + oh * sh:sh, j:j + ow * sw:sw] += cols[:, :, :, i, j]
        top, left = _padding(layer)
        return padded[:, top:top + layer.input_shape[0], left:left + layer.input_shape[1]]
    if layer.kind == "MaxPooling2D":
        # The gradient goes to the first maximum of each window (among exactly equal maxima
        # TensorFlow's choice depends on the CPU's kernels; any one is a right answer).
        (ph, pw), (oh, ow) = layer.strides, layer.output_shape[:2]
        pooled = np.maximum.reduce(_pool_windows(layer, layer_input))
        out = np.zeros_like(layer_input)
        taken = np.zeros(pooled.shape, bool)
        for k, window in enumerate(_pool_windows(layer, layer_input)):
            first = (window == pooled) & ~taken
            taken |= first
            out[:, k // pw:oh * ph:ph, k % pw:ow * pw:pw] = grad * first
        return out
    if layer.kind == "BatchNormalization":
        return grad * layer.scale
    return grad.reshape(n, *layer.input_shape)  # Reshape, Flatten, Dropout, Activation


def _pool_windows(layer: NetLayer, h: np.ndarray) -> list[np.ndarray]:
    """The ph * pw strided views of (N, H, W, C) whose element-wise maximum is the pooling."""
    (ph, pw), (oh, ow) = layer.strides, layer.output_shape[:2]
    return [h[:, i:oh * ph:ph, j:ow * pw:pw] for i in range(ph) for j in range(pw)]


def _padding(layer: NetLayer) -> tuple[int, int]:
    """Rows and columns Keras adds before the image for 'same' padding (the rest go after)."""
    if layer.settings.get("padding", "valid") != "same":
        return 0, 0
    (kh, kw), (sh, sw) = layer.kernel.shape[:2], layer.strides
    (h, w), (oh, ow) = layer.input_shape[:2], layer.output_shape[:2]
    return max((oh - 1) * sh + kh - h, 0) // 2, max((ow - 1) * sw + kw - w, 0) // 2


def _pad(layer: NetLayer, h: np.ndarray) -> np.ndarray:
    if layer.settings.get("padding", "valid") != "same":
        return h
    (kh, kw), (sh, sw) = layer.kernel.shape[:2], layer.strides
    (oh, ow), (ih, iw) = layer.output_shape[:2], layer.input_shape[:2]
    pad_h, pad_w = max((oh - 1) * sh + kh - ih, 0), max((ow - 1) * sw + kw - iw, 0)
    return np.pad(h, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                      (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


def _im2col(h: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int]) -> np.ndarray:
    """(N, H, W, C) -> (N * oh * ow, kh * kw * C), rows ordered as the kernel's weights."""
    windows = np.lib.stride_tricks.sliding_window_view(h, kernel, axis=(1, 2))
    windows = windows[:, ::strides[0], ::strides[1]]  # (N, oh, ow, C, kh, kw)
    n, oh, ow, c, kh, kw = windows.shape
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, kh * kw * c)


def _activate(pre: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return np.maximum(pre, 0)
    if activation == "softmax":
        shifted = np.exp(pre - pre.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if activation == "sigmoid":
        return 1 / (1 + np.exp(-pre))
    if activation == "tanh":
        return np.tanh(pre)
    return pre


def _activation_backward(grad: np.ndarray, out: np.ndarray, activation: str) -> np.ndarray:
    if activation == "relu":
        return grad * (out > 0)
    if activation == "softmax":
        return out * (grad - (grad * out).sum(axis=-1, keepdims=True))
    if activation == "sigmoid":
        return grad * out * (1 - out)
    if activation == "tanh":
        return grad * (1 - out * out)
    return grad
