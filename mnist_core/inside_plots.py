"""Pictures for the "Inside the network" page: small inline PNGs in plain HTML.

Every picture is built with numpy and Pillow at its own size (a 28x28 map is a few hundred
bytes) and enlarged by the browser with crisp pixels, so a page of twenty pictures costs
the server a few milliseconds and a phone a few kilobytes. No matplotlib figures: the page
redraws them after every stroke of every visitor.

Colours: activations in "magma" (black = silent, like the background, up to pale yellow =
strongest); weights and saliency in a red-white-blue scale (red: ink there pushes the value
up or votes for the predicted digit; blue: the opposite).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

import altair as alt
import numpy as np
import pandas as pd
from matplotlib import colormaps

from mnist_core.data import IMAGE_SIZE
from mnist_core.inside import NetLayer, Network, Saliency, Sample, Snapshot, Trace, unit_images
from mnist_core.plots import png_data_uri, probabilities_html

ACTIVE_LUT = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
DIVERGING_LUT = (colormaps["RdBu_r"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
GAP = np.array([255, 255, 255], np.uint8)  # between tiles: the page's background
MARK = np.array([0, 229, 255], np.uint8)  # cyan frame around the strongest units
FOR_DIGIT = np.array([214, 39, 40], np.float32)  # red
FOR_RIVAL = np.array([31, 119, 180], np.float32)  # blue
TOP_UNITS = 8
FILTER_ZOOM, FILTER_GAP = 8, 4  # 3x3 filters drawn 24x24 with gaps, so the gaps stay thin
MUTED = "color:#555;font-size:0.8rem"


def active_rgb(values: np.ndarray, top: float | None = None) -> np.ndarray:
    """Non-negative values (H, W) -> (H, W, 3) uint8 in magma, 0 black, `top` (or max) bright."""
    top = float(values.max()) if top is None else top
    scaled = np.clip(values / top, 0, 1) if top > 0 else np.zeros_like(values)
    return ACTIVE_LUT[(scaled * 255).astype(np.uint8)]


def diverging_rgb(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Signed values (H, W) -> (H, W, 3) uint8: blue negative, white zero, red positive."""
    limit = float(np.abs(values).max()) if limit is None else limit
    scaled = np.clip(values / limit, -1, 1) if limit > 0 else np.zeros_like(values)
    return DIVERGING_LUT[np.round((scaled + 1) * 127.5).astype(np.uint8)]


def mosaic(tiles: list[np.ndarray], cols: int, gap: int = 1) -> np.ndarray:
    """Equal-sized RGB tiles (h, w, 3) in a grid, `gap` pixels of page background between."""
    stack = np.asarray(tiles, np.uint8)
    count, h, w = stack.shape[:3]
    rows = -(-count // cols)
    out = np.empty((rows * (h + gap), cols * (w + gap), 3), np.uint8)
    out[:] = GAP
    cells = out.reshape(rows, h + gap, cols, w + gap, 3)  # a view: writing it fills `out`
    for i in range(rows):
        line = stack[i * cols:(i + 1) * cols]
        cells[i, :h, :len(line), :w] = line.transpose(1, 0, 2, 3)
    return out[:-gap, :-gap] if gap else out


# Once per page (st.html puts a style-only block out of the way): arrows between layers
# point right on a wide screen and down on a phone, where the pictures stack.
STYLE = """<style>
.inside-arrow{align-self:center;font-size:1.4rem;color:#999}
.inside-arrow::before{content:"\\2192"}
@media (max-width: 640px){.inside-arrow{flex-basis:100%;padding-left:40px;line-height:1}
.inside-arrow::before{content:"\\2193"}}
</style>"""


def figure(image: np.ndarray, title: str, caption: str = "", width: int = 180,
           alt: str | None = None, framed: bool = False) -> str:
    """One picture, enlarged to `width` CSS pixels (less on a narrow screen), with its text.

    `caption` is HTML (callers escape what they did not write); `framed` draws a thin border
    for pictures on white that would otherwise melt into the page.
    """
    pixelated = ";image-rendering:pixelated" if max(image.shape[:2]) < width else ""
    border = ";outline:1px solid #ccc" if framed else ""
    return (
        f'<figure style="margin:0;flex:0 1 {width}px;width:{width}px;max-width:100%;'
        f'min-width:90px">'
        f'<div style="font-weight:600;font-size:0.9rem;margin-bottom:4px">{escape(title)}</div>'
        f'<img src="{png_data_uri(image)}" alt="{escape(alt or title)}" '
        f'style="width:100%;height:auto;display:block{pixelated}{border}">'
        f'<figcaption style="{MUTED};margin-top:4px">{caption}</figcaption></figure>'
    )


def row(parts: list[str], arrows: bool = False) -> str:
    """Pictures side by side, wrapping onto more lines on a narrow screen."""
    joiner = '<div class="inside-arrow" aria-hidden="true"></div>' if arrows else ""
    return (f'<div style="display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start">'
            f'{joiner.join(parts)}</div>')


def digit_image(x: np.ndarray) -> np.ndarray:
    """(784,) or (28, 28) float in [0, 1] -> (28, 28) uint8, white ink on black."""
    return np.round(np.asarray(x).reshape(IMAGE_SIZE, IMAGE_SIZE) * 255).astype(np.uint8)


def strongest(values: np.ndarray, count: int = TOP_UNITS) -> np.ndarray:
    """Indices of the `count` largest values of a 1-D array, largest first (only if > 0)."""
    order = np.argsort(-values, kind="stable")[:count]
    return order[values[order] > 0]


def units_grid(values: np.ndarray, cols: int = 32, cell: int = 6, top: float | None = None,
               marked: np.ndarray | None = None) -> np.ndarray:
    """A Dense layer's outputs (units,) as a grid of cells, `marked` units framed in cyan."""
    rows = -(-len(values) // cols)
    padded = np.zeros(rows * cols, np.float32)
    padded[:len(values)] = values
    colours = active_rgb(padded.reshape(rows, cols), top)
    colours.reshape(-1, 3)[len(values):] = GAP  # no cells after the last unit
    pitch = cell + 1
    out = np.empty((rows * pitch + 1, cols * pitch + 1, 3), np.uint8)
    out[:] = GAP
    cells = out[1:, 1:].reshape(rows, pitch, cols, pitch, 3)  # a view into `out`
    cells[:, :cell, :, :cell] = colours[:, None, :, None]
    for unit in (marked if marked is not None else []):
        r, c = divmod(int(unit), cols)
        box = out[r * pitch:r * pitch + pitch + 1, c * pitch:c * pitch + pitch + 1]
        box[[0, -1], :] = MARK
        box[:, [0, -1]] = MARK
    return out


def feature_maps(maps: np.ndarray, cols: int = 8) -> np.ndarray:
    """A convolution's or pooling's output (h, w, channels) as a mosaic, one scale per layer."""
    top = float(maps.max())
    coloured = active_rgb(maps, top if top > 0 else 1.0)  # (h, w, channels, 3)
    return mosaic(list(coloured.transpose(2, 0, 1, 3)), cols)


def layer_figure(layer: NetLayer, output: np.ndarray) -> str | None:
    """One layer's output for one input, or None for layers that only move numbers around."""
    shape = "x".join(str(d) for d in layer.output_shape)
    if layer.kind == "Dense" and layer.activation != "softmax":
        active = int((output > 0).sum())
        marked = strongest(output)
        grid = units_grid(output, marked=marked)
        return figure(grid, f"{layer.name} · {len(output)} units",
                      f"{active} of {len(output)} units active; the {len(marked)} strongest "
                      f"framed in light blue", width=grid.shape[1], alt=f"activations of {layer.name}")
    if layer.kind in ("Conv2D", "MaxPooling2D") or (
            layer.kind == "Activation" and len(layer.output_shape) == 3):
        what = {"Conv2D": "feature maps", "MaxPooling2D": "pooled 2x2 → half size",
                "Activation": f"after {layer.activation}"}[layer.kind]
        return figure(feature_maps(output), f"{layer.name} · {shape}",
                      f"{output.shape[-1]} {what}", width=230,
                      alt=f"feature maps of {layer.name}")
    return None


def forward_html(layers: list[NetLayer], trace: Trace, probabilities_html: str) -> str:
    """The input, every layer with something to see, and the output, left to right."""
    parts = [figure(digit_image(trace.x[0]), "input · 28x28", "784 numbers from 0 to 1",
                    width=120, alt="the input image")]
    skipped = []
    for layer, output in zip(layers, trace.outputs, strict=True):
        if layer is layers[-1]:
            break
        part = layer_figure(layer, output[0])
        if part is None:
            skipped.append(layer.name)
        else:
            parts.append(part)
    parts.append(
        f'<figure style="margin:0;flex:1 1 220px;min-width:200px;max-width:360px">'
        f'<div style="font-weight:600;font-size:0.9rem;margin-bottom:4px">'
        f'{escape(layers[-1].name)} · softmax</div>{probabilities_html}'
        f'<figcaption style="{MUTED};margin-top:4px">10 probabilities adding up to 1'
        f'</figcaption></figure>')
    note = (f'<div style="{MUTED};margin-top:6px">Not drawn: {escape(", ".join(skipped))} '
            f'(they reshape or rescale the numbers, or do nothing when predicting).</div>') if skipped else ""
    return row(parts, arrows=True) + note


def unit_weights_html(layer: NetLayer, units: np.ndarray, activations: np.ndarray,
                      x: np.ndarray, shown: np.ndarray) -> str:
    """Some first-layer Dense units: each one's weights as a 28x28 picture (`shown`: the
    kernel, or what training added to it), next to its whole weights times this input, the
    red and blue that add up to its output."""
    ink = np.asarray(x, np.float32).reshape(-1)
    pictures = unit_images(shown, units)
    parts = []
    for unit, picture in zip(units, pictures, strict=True):
        weights = layer.kernel[:, unit]
        pair = side_by_side(
            _bordered(diverging_rgb(picture)),
            _bordered(saliency_overlay(ink, (weights * ink).reshape(IMAGE_SIZE, IMAGE_SIZE))),
            gap=2)
        parts.append(figure(pair, f"unit {unit}", f"output {activations[unit]:.2f}", width=160,
                            alt=f"weights of unit {unit}, and its weights times the input"))
    return row(parts)


def weights_page(shown: np.ndarray, first: int, count: int = 64, cols: int = 8) -> np.ndarray:
    """Units first..first+count of a Dense layer over the input (`shown` (784, units)) as
    28x28 tiles, each on its own scale: what matters is the pattern, not the size."""
    units = np.arange(first, min(first + count, shown.shape[1]))
    return mosaic([diverging_rgb(picture) for picture in unit_images(shown, units)], cols)


def filters_mosaic(shown: np.ndarray, cols: int = 8) -> np.ndarray:
    """A first convolution's filters (kh, kw, channels, filters) as tiles, one shared scale."""
    pictures = unit_images(shown)
    limit = float(np.abs(pictures).max())
    return mosaic([_enlarge(diverging_rgb(p, limit), FILTER_ZOOM) for p in pictures], cols,
                  gap=FILTER_GAP)


def filters_html(maps: np.ndarray, filters: np.ndarray, shown: np.ndarray) -> str:
    """Some filters of a first convolution (`shown`: its kernel, or what training added),
    each next to the feature map it makes of the input."""
    pictures = unit_images(shown)
    limit = float(np.abs(pictures).max())
    top = float(maps.max()) or 1.0
    parts = []
    for k in filters:
        pair = side_by_side(_enlarge(diverging_rgb(pictures[k], limit), FILTER_ZOOM),
                            active_rgb(maps[..., k], top))
        parts.append(figure(pair, f"filter {k}", f"its map: max {maps[..., k].max():.2f}",
                            width=150, alt=f"filter {k} and its feature map"))
    return row(parts)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    """Two RGB images in a row, top-aligned, on the page background."""
    height = max(left.shape[0], right.shape[0])
    out = np.empty((height, left.shape[1] + gap + right.shape[1], 3), np.uint8)
    out[:] = GAP
    out[:left.shape[0], :left.shape[1]] = left
    out[:right.shape[0], left.shape[1] + gap:] = right
    return out


def saliency_overlay(x: np.ndarray, values: np.ndarray, show_ink: bool = True) -> np.ndarray:
    """Signed per-pixel values in red (for) and blue (against) over the digit in light gray
    on white paper: (28, 28) -> (28, 28, 3) uint8."""
    ink = np.asarray(x, np.float32).reshape(IMAGE_SIZE, IMAGE_SIZE)
    paper = 255 - (ink * 110 if show_ink else 0 * ink)
    base = np.repeat(paper[..., None], 3, axis=2)
    limit = float(np.abs(values).max())
    strength = (np.abs(values) / limit) ** 0.6 if limit > 0 else np.zeros_like(values)
    colour = np.where((values >= 0)[..., None], FOR_DIGIT, FOR_RIVAL)
    out = base * (1 - strength[..., None]) + colour * strength[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def saliency_html(x: np.ndarray, result: Saliency) -> str:
    d, r = result.digit, result.rival
    return row([
        figure(digit_image(x), "the input", f"predicted {d}", width=200),
        figure(saliency_overlay(x, result.attribution), f"ink voting {d} or {r}",
               f'<span style="color:#d62728">red: for {d}</span> · '
               f'<span style="color:#1f77b4">blue: for {r}</span>', width=200,
               alt=f"which ink made it a {d} rather than a {r}", framed=True),
        figure(saliency_overlay(x, result.gradient), "where more ink would help",
               f'<span style="color:#d62728">red: more {d}</span> · '
               f'<span style="color:#1f77b4">blue: more {r}</span>', width=200,
               alt=f"where adding ink would make it more a {d} or more a {r}", framed=True),
    ])


def snapshot_weights(snapshot: Snapshot, reference: np.ndarray | None = None) -> np.ndarray:
    """A snapshot's units as tiles: the MLP's 16 units 28x28 (4 a row), the CNN's filters
    (8 a row). With `reference` (K, h, w), the change from it instead of the weights."""
    pictures = snapshot.weights if reference is None else snapshot.weights - reference
    if pictures.shape[1] >= IMAGE_SIZE:
        return mosaic([diverging_rgb(p) for p in pictures], cols=4)
    limit = float(np.abs(pictures).max())
    return mosaic([_enlarge(diverging_rgb(p, limit), FILTER_ZOOM) for p in pictures], cols=8,
                  gap=FILTER_GAP)


def sample_predictions_html(sample: Sample, probabilities: np.ndarray) -> str:
    """The fixed validation images, each with the digit predicted at this snapshot."""
    predicted = probabilities.argmax(axis=1)
    cells = []
    for i, image in enumerate(sample.images[:len(predicted)]):
        right = sample.labels is None or sample.labels[i] == predicted[i]
        colour = "#1a7f37" if right else "#cf222e"
        cells.append(
            f'<figure style="margin:0;text-align:center">'
            f'<img src="{png_data_uri(image)}" alt="validation image {i}" '
            f'style="width:100%;image-rendering:pixelated;display:block">'
            f'<figcaption style="font-weight:700;color:{colour};font-size:0.9rem">'
            f'{predicted[i]}</figcaption></figure>')
    return ('<div style="display:grid;grid-template-columns:repeat(10,minmax(0,1fr));gap:4px;'
            f'max-width:520px">{"".join(cells)}</div>')


def _bordered(rgb: np.ndarray) -> np.ndarray:
    """A 1-pixel light gray frame around an RGB image."""
    out = np.full((rgb.shape[0] + 2, rgb.shape[1] + 2, 3), 204, np.uint8)
    out[1:-1, 1:-1] = rgb
    return out


def _enlarge(rgb: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def growth_chart(points: list[tuple[int, float]], current: int) -> alt.Chart:
    """Share of the sample predicted right after each snapshot's batches (log scale), and a
    rule at the snapshot shown."""
    frame = pd.DataFrame(points, columns=["batches", "right"])
    line = alt.Chart(frame).mark_line(point=True).encode(
        x=alt.X("batches:Q", title="batches seen (log scale)",
                scale=alt.Scale(type="log", nice=False,
                                domain=[1, max(step for step, _ in points)])),
        y=alt.Y("right:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"),
                title="sample right"),
        tooltip=["batches", alt.Tooltip("right:Q", format=".0%")],
    )
    rule = alt.Chart(pd.DataFrame({"batches": [current]})).mark_rule(color="#e4572e").encode(
        x="batches:Q")
    return (line + rule).properties(height=200)


@dataclass(frozen=True)
class InputView:
    """What the page shows for one input: plain values and ready HTML."""

    probabilities: np.ndarray  # (10,)
    digit: int
    runner_up: int
    forward_html: str  # the input, every layer's output, the probabilities
    units_html: str  # the strongest first-layer units (MLP) or filters (CNN)


def input_view(net: Network, x: np.ndarray, start: np.ndarray | None = None) -> InputView:
    """Forward pass and its pictures for one input x (784,) float32 in [0, 1].

    `start`: the first layer's kernel before training; when given, the units' pictures show
    what training added to it (the random start hides it in an MLP's weights).
    """
    trace = net.forward(x)
    probabilities = trace.probabilities[0]
    order = np.argsort(-probabilities)
    first = net.first_kernel_layer
    shown = first.kernel if start is None else first.kernel - start
    output = trace.outputs[first.index][0]
    if first.kind == "Dense":
        units_html = unit_weights_html(first, strongest(output), output, x, shown)
    else:
        filters = np.argsort(-output.max(axis=(0, 1)))[:TOP_UNITS]
        units_html = filters_html(output, filters, shown)
    return InputView(probabilities, int(order[0]), int(order[1]),
                     forward_html(net.layers, trace, probabilities_html(probabilities)), units_html)
