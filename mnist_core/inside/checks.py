"""The checks of a saved network's layers, as `weights.npz` is loaded: kinds, settings, shapes.

Every fault raises `InsideError` naming the file and the layer, so a teacher can tell a
damaged or foreign file from a bug.
"""

from __future__ import annotations

import math

import numpy as np

from mnist_core.inside.files import InsideError

SUPPORTED = ("Reshape", "Dense", "Conv2D", "MaxPooling2D", "Flatten", "Dropout",
             "BatchNormalization", "Activation")
# A batch normalisation's saved arrays; when predicting it is a per-channel scale and shift.
NORM_ARRAYS = ("gamma", "beta", "moving_mean", "moving_variance")
ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax")


def checked_array(arrays: dict, key: str, where: str) -> np.ndarray:
    if key not in arrays:
        raise InsideError(f"{where}: the array {key} is missing")
    value = arrays[key]
    if value.dtype.kind != "f":
        raise InsideError(f"{where}: {key} is {value.dtype}, not floating point")
    with np.errstate(over="ignore"):  # too large for float32: inf, refused just below
        value = value.astype(np.float32)
    if not np.isfinite(value).all():
        raise InsideError(f"{where}: {key} holds NaN or infinite values")
    value.setflags(write=False)  # shared by every visitor's thread
    return value


def check_settings(settings: dict, where: str) -> None:
    activation = settings.get("activation", "linear")
    if activation not in ACTIVATIONS:
        raise InsideError(f"{where}: activation {activation!r} is not supported")
    if settings.get("data_format") not in (None, "channels_last"):
        raise InsideError(f"{where}: only channels_last images are supported")
    if settings.get("center", True) is not True or settings.get("scale", True) is not True:
        raise InsideError(f"{where}: batch normalisation without its center and scale "
                          "is not supported")
    if settings.get("padding", "valid") not in ("valid", "same"):
        raise InsideError(f"{where}: padding {settings['padding']!r} is not supported")
    if pair(settings.get("dilation_rate", 1)) != (1, 1) or settings.get("groups", 1) != 1:
        raise InsideError(f"{where}: dilated or grouped convolutions are not supported")


def output_shape(kind: str, settings: dict, shape: tuple, kernel, bias, where: str) -> tuple:
    """The layer's output shape for input `shape`, after checking its arrays against it."""
    if kind == "Dense":
        if len(shape) != 1 or kernel.shape != (shape[0], settings.get("units", kernel.shape[-1])):
            raise InsideError(f"{where}: kernel shape {kernel.shape} does not fit input {shape}")
        check_bias(bias, kernel.shape[-1], where)
        return (kernel.shape[1],)
    if kind == "Conv2D":
        if len(shape) != 3 or kernel.ndim != 4 or kernel.shape[2] != shape[2] or (
                kernel.shape[:2] != pair(settings.get("kernel_size", kernel.shape[:2]))) or (
                kernel.shape[3] != settings.get("filters", kernel.shape[3])):
            raise InsideError(f"{where}: kernel shape {kernel.shape} does not fit input {shape}")
        check_bias(bias, kernel.shape[-1], where)
        (sh, sw), (kh, kw) = pair(settings.get("strides", 1)), kernel.shape[:2]
        if settings.get("padding", "valid") == "same":
            return (-(-shape[0] // sh), -(-shape[1] // sw), kernel.shape[3])
        return ((shape[0] - kh) // sh + 1, (shape[1] - kw) // sw + 1, kernel.shape[3])
    if kind == "MaxPooling2D":
        pool = pair(settings.get("pool_size", 2))
        if len(shape) != 3 or pair(settings.get("strides") or pool) != pool or (
                settings.get("padding", "valid") != "valid"):
            raise InsideError(f"{where}: only non-overlapping valid pooling of images is supported")
        return (shape[0] // pool[0], shape[1] // pool[1], shape[2])
    if kind == "Reshape":
        target = tuple(int(d) for d in settings.get("target_shape", ()))
        if math.prod(target) != math.prod(shape):
            raise InsideError(f"{where}: cannot reshape {shape} to {target}")
        return target
    if kind == "Flatten":
        return (math.prod(shape),)
    return shape  # Dropout, Activation, BatchNormalization (checked by _norm)


def norm_scale_shift(settings: dict, arrays: list[np.ndarray], shape: tuple,
          where: str) -> tuple[np.ndarray, np.ndarray]:
    """A batch normalisation's saved arrays (NORM_ARRAYS order) -> its (scale, shift)."""
    gamma, beta, mean, variance = arrays
    channels = shape[-1]
    for name, value in zip(NORM_ARRAYS, arrays, strict=True):
        if value.shape != (channels,):
            raise InsideError(f"{where}: {name} has shape {value.shape}, expected ({channels},)")
    if (variance < 0).any():
        raise InsideError(f"{where}: moving_variance holds negative values")
    epsilon = float(settings.get("epsilon", 1e-3))
    scale = (gamma / np.sqrt(variance + epsilon)).astype(np.float32)
    shift = (beta - mean * scale).astype(np.float32)
    scale.setflags(write=False)
    shift.setflags(write=False)
    return scale, shift


def check_bias(bias, size: int, where: str) -> None:
    if bias is not None and bias.shape != (size,):
        raise InsideError(f"{where}: bias shape {bias.shape}, expected ({size},)")


def pair(value) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    first, second = value
    return int(first), int(second)
