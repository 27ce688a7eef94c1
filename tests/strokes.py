"""MNIST digits redrawn as pen strokes, the way a visitor draws them on the Draw page.

A digit is thinned to its skeleton (Zhang-Suen, in numpy), the skeleton is traced into
ordered polylines and chained into a few pen strokes, and the strokes are drawn on a black
280x280 canvas with a white round pen (fabric.js freedraw: round caps and joins,
anti-aliased) at a random pen width, size and position:

    digit (28, 28) uint8 -> skeleton (112, 112) bool -> strokes [(K, 2) float (x, y)]
    -> Drawing (canvas points, pen width) -> render -> (280, 280, 4) RGBA uint8

`render` returns what `st_canvas(..., return_image_data=True)` gives the Draw page; the
browser replay (`benchmarks.drawn_digits_browser`) moves the mouse along the same points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mnist_core.data import IMAGE_SIZE
from mnist_core.skeleton import NEIGHBOURS, thin

CANVAS_SIZE = 280
UPSCALE = 4  # trace at 112x112: a 28x28 skeleton is too jagged to draw from
# Gray levels (0-255) at which the upscaled digit counts as ink: mid-edge first; higher ones
# open loops that a thick pen filled in (a person draws a "6" with a loop, not a blob).
INK_LEVELS = (128, 160, 192, 224)
BRIDGE = UPSCALE  # gaps up to ~2 px at 28x28 in a dotted stroke are drawn through
SPUR_LENGTH = 8  # skeleton branches shorter than this (112-px units) ending in a tip are noise
SMOOTH_WINDOW = 5  # moving average over traced skeleton pixels
POINT_SPACING = 4  # keep every 4th smoothed pixel: ~10 canvas px between mouse points
PEN_WIDTHS = (12, 30)  # the Draw page's slider as people set it (default 20)
DIGIT_SIZES = (110, 230)  # longer side of the digit's skeleton on the canvas, px
SUPERSAMPLE = 4  # render at 4x and box-filter down: the browser's anti-aliasing

@dataclass(frozen=True)
class Drawing:
    """Pen strokes on the canvas: each an (K, 2) float array of (x, y) points, K >= 1."""

    strokes: list[np.ndarray]
    width: int  # pen width in canvas px

    def render(self, size: int = CANVAS_SIZE) -> np.ndarray:
        return render(self.strokes, self.width, size)


def _neighbours(skeleton: np.ndarray) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """8-connected pixel graph of a skeleton, without the diagonal shortcuts of staircases.

    A diagonal step is dropped when one of the two pixels beside it is also inked: the path
    goes through that pixel instead, so a staircase is a line, not a chain of triangles.
    """
    pixels = set(zip(*np.nonzero(skeleton), strict=True))
    graph = {}
    for r, c in pixels:
        near = []
        for dy, dx in NEIGHBOURS:
            q = (r + dy, c + dx)
            if q not in pixels:
                continue
            if dy and dx and ((r + dy, c) in pixels or (r, c + dx) in pixels):
                continue
            near.append(q)
        graph[(int(r), int(c))] = [(int(a), int(b)) for a, b in near]
    return graph


def trace(skeleton: np.ndarray) -> list[list[tuple[int, int]]]:
    """Skeleton -> its branches as ordered pixel paths (row, col) between tips and forks.

    A closed loop with no tip or fork (a "0") comes back as one path that ends where it began.
    """
    graph = _neighbours(skeleton)
    nodes = {p for p, near in graph.items() if len(near) != 2}
    used: set[frozenset] = set()
    paths = []

    def walk(start, nxt):
        path = [start, nxt]
        used.add(frozenset((start, nxt)))
        while path[-1] not in nodes:
            step = [q for q in graph[path[-1]] if frozenset((path[-1], q)) not in used]
            if not step:
                break
            used.add(frozenset((path[-1], step[0])))
            path.append(step[0])
        return path

    for node in sorted(nodes):
        for nxt in graph[node]:
            if frozenset((node, nxt)) not in used:
                paths.append(walk(node, nxt))
    for pixel in sorted(graph):  # loops left over have no nodes at all
        for nxt in graph[pixel]:
            if frozenset((pixel, nxt)) not in used:
                nodes.add(pixel)
                paths.append(walk(pixel, nxt))
                nodes.discard(pixel)
    for node in sorted(p for p, near in graph.items() if not near):
        paths.append([node])  # an isolated dot
    return paths


def prune_spurs(paths: list[list], min_length: int = SPUR_LENGTH) -> list[list]:
    """Drop short branches that end in a tip on one side and a fork on the other."""
    ends: dict[tuple, int] = {}
    for path in paths:
        for end in (path[0], path[-1]):
            ends[end] = ends.get(end, 0) + 1
    kept = [path for path in paths
            if len(path) >= min_length or len(paths) == 1
            or not (min(ends[path[0]], ends[path[-1]]) == 1
                    and max(ends[path[0]], ends[path[-1]]) >= 2)]
    return kept or paths


def chain(paths: list[list]) -> list[list]:
    """Join branches that meet into longer pen strokes, going on as straight as possible.

    A person draws an "8" in one or two strokes, not six; the rendered ink is the same
    either way, but the browser replay needs one mouse stroke per pen stroke.
    """
    remaining = [list(p) for p in paths]
    strokes = []
    while remaining:
        # Start at a tip if there is one (the top-most), as a pen usually does.
        degree: dict[tuple, int] = {}
        for p in remaining:
            for end in (p[0], p[-1]):
                degree[end] = degree.get(end, 0) + 1
        tips = [(p[0], i, False) for i, p in enumerate(remaining) if degree[p[0]] == 1]
        tips += [(p[-1], i, True) for i, p in enumerate(remaining) if degree[p[-1]] == 1]
        _, index, flip = min(tips) if tips else (None, 0, False)
        stroke = remaining.pop(index)
        stroke = stroke[::-1] if flip else stroke
        while len(stroke) > 1 and stroke[-1] != stroke[0]:
            heading = -_direction(stroke[::-1])  # where the pen is going
            best, best_score = None, -np.inf
            for i, p in enumerate(remaining):
                for candidate in (p, p[::-1]):
                    if len(candidate) > 1 and candidate[0] == stroke[-1]:
                        score = float(np.dot(heading, _direction(candidate)))
                        if score > best_score:
                            best, best_score = (i, candidate), score
            if best is None:
                break
            remaining.pop(best[0])
            stroke += best[1][1:]
        strokes.append(stroke)
    return strokes


def _direction(path: list, reach: int = 6) -> np.ndarray:
    """Unit vector from a path's first pixel towards its `reach`-th."""
    d = np.subtract(path[min(reach, len(path) - 1)], path[0]).astype(float)
    n = float(np.hypot(*d))
    return d / n if n else d


def smooth(path: list, window: int = SMOOTH_WINDOW, spacing: int = POINT_SPACING) -> np.ndarray:
    """Pixel path -> (K, 2) float (x, y) points: moving average, then every `spacing`-th."""
    points = np.array(path, float)[:, ::-1]  # (row, col) -> (x, y)
    if len(points) > window:
        kernel = np.ones(window) / window
        half = window // 2
        padded = np.pad(points, ((half, half), (0, 0)), mode="edge")
        inner = np.stack([np.convolve(padded[:, k], kernel, "valid") for k in (0, 1)], 1)
        inner[0], inner[-1] = points[0], points[-1]  # keep the ends where they are
        points = inner
    keep = list(range(0, len(points), spacing))
    if keep[-1] != len(points) - 1:
        keep.append(len(points) - 1)
    return points[keep]


def components(ink: np.ndarray) -> int:
    """Number of 8-connected pieces of ink."""
    todo = set(zip(*np.nonzero(ink), strict=True))
    count = 0
    while todo:
        count += 1
        stack = [todo.pop()]
        while stack:
            r, c = stack.pop()
            for dy, dx in NEIGHBOURS:
                if (q := (r + dy, c + dx)) in todo:
                    todo.remove(q)
                    stack.append(q)
    return count


def holes(ink: np.ndarray) -> int:
    """Number of enclosed background regions: components minus the Euler number.

    Euler number of 8-connected ink from its 2x2 "bit quads" (Gray 1971):
    (ones - threes - 2 diagonals) / 4.
    """
    p = np.pad(ink, 1).astype(np.int8)
    a, b, c, d = p[:-1, :-1], p[:-1, 1:], p[1:, :-1], p[1:, 1:]
    total = a + b + c + d
    diagonal = (total == 2) & (a == d)
    euler = ((total == 1).sum() - (total == 3).sum() - 2 * diagonal.sum()) // 4
    return components(ink) - int(euler)


def dilate(ink: np.ndarray, radius: int) -> np.ndarray:
    """Grow (H, W) bool ink by `radius` px (a square pen)."""
    out = ink.copy()
    for _ in range(radius):
        p = np.pad(out, 1)
        out = out | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
        p = np.pad(out, 1)
        out = out | p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
    return out


def ink_level(digit: np.ndarray) -> tuple[int, bool]:
    """(gray level to thin the digit at, whether its pieces need joining), from the 28x28 image.

    The level that shows the most loops while every part of the digit stays (its ink at
    the mid level is within 1 px of the ink at this level) and it does not fall apart.
    """
    base = digit >= INK_LEVELS[0]
    pieces, best_holes, best = components(base), holes(base), INK_LEVELS[0]
    for level in INK_LEVELS[1:]:
        ink = digit >= level
        if components(ink) > pieces or (base & ~dilate(ink, 1)).sum() > 0.03 * base.sum():
            break
        if (found := holes(ink)) > best_holes:
            best, best_holes = level, found
    return best, pieces > 1


def digit_strokes(digit: np.ndarray) -> list[np.ndarray]:
    """(28, 28) uint8 MNIST digit -> pen strokes as (K, 2) (x, y) arrays in 112x112 units."""
    size = IMAGE_SIZE * UPSCALE
    big = np.asarray(Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR))
    level, broken = ink_level(digit)
    ink = big >= level
    if broken:
        joined = dilate(ink, BRIDGE)
        ink = joined if components(joined) < components(ink) else ink
    skeleton = thin(ink)
    if not skeleton.any():
        raise ValueError("the digit has no ink")
    return [smooth(path) for path in chain(prune_spurs(trace(skeleton)))]


def place(strokes: list[np.ndarray], rng: np.random.Generator,
          canvas: int = CANVAS_SIZE) -> Drawing:
    """Random pen width, digit size and position on the canvas, the whole digit on it."""
    width = int(rng.integers(PEN_WIDTHS[0], PEN_WIDTHS[1] + 1))
    points = np.concatenate(strokes)
    low, high = points.min(0), points.max(0)
    extent = max(float((high - low).max()), 1.0)
    target = rng.uniform(*DIGIT_SIZES)
    scale = target / extent
    span = (high - low) * scale
    margin = width / 2 + 2
    room = np.maximum(canvas - 2 * margin - span, 0)
    offset = margin + rng.uniform(0, 1, 2) * room - low * scale
    return Drawing([s * scale + offset for s in strokes], width)


def render(strokes: list[np.ndarray], width: int, size: int = CANVAS_SIZE) -> np.ndarray:
    """Strokes -> (size, size, 4) RGBA uint8: white round pen on opaque black, anti-aliased."""
    big = Image.new("L", (size * SUPERSAMPLE, size * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    radius = width * SUPERSAMPLE / 2
    for stroke in strokes:
        points = [(float(x) * SUPERSAMPLE, float(y) * SUPERSAMPLE) for x, y in stroke]
        if len(points) > 1:
            draw.line(points, fill=255, width=round(width * SUPERSAMPLE), joint="curve")
        for x, y in points:  # round caps and joins
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    gray = np.asarray(big.resize((size, size), Image.Resampling.BOX))
    return np.dstack([gray, gray, gray, np.full_like(gray, 255)])


def drawn_digits(images: np.ndarray, seed: int = 0) -> list[Drawing]:
    """One random Drawing per (N, 28, 28) uint8 digit; the same seed gives the same drawings."""
    rng = np.random.default_rng(seed)
    return [place(digit_strokes(image), rng) for image in images]
