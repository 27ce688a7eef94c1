"""Everything "Inside the network" computes for one input, in the server process, in numpy.

    python -m benchmarks.bench_inside [models dir]

For every model (`config.MODELS`): the newest run of that model in the models folder that has a
`weights.npz` (else the same architecture with random weights: the arithmetic is the same).
Over 100 validation digits, each slightly changed as by the page's sliders, it times what the
page computes for a new input, uncached: the change itself, the forward pass with its
pictures (every layer, the strongest units), the saliency with its pictures, and the ~70
changed copies that find where the prediction breaks. Prints p50 and p95 of each part and
of the total.
"""

import statistics
import sys
import time

import numpy as np

from mnist_core import inside, inside_plots
from mnist_core.config import MODELS
from mnist_core.data import normalize, read_mnist
from mnist_core.models import layers_of
from mnist_core.runs.store import ModelStore

INPUTS = 100
WARMUP = 5


def network(store: ModelStore, model: str) -> tuple[inside.Network, str]:
    """The newest saved run of `model` with weights, or random weights of its architecture."""
    for run in store.scan().usable:
        path = run.path / inside.WEIGHTS_FILE
        if run.config.model == model and path.is_file():
            return inside.load_network(path), f"run {run.run_id}"
    return inside.random_network(model, layers_of(model)), "random weights (no saved run)"


def one_input(net: inside.Network, image: np.ndarray, change: inside.Perturbation) -> dict:
    """Seconds spent on each part of one new input, as the page computes it."""
    times = {}
    start = time.perf_counter()
    x = inside.perturb(image, change).reshape(-1)
    times["change"] = time.perf_counter() - start
    start = time.perf_counter()
    inside_plots.input_view(net, x)
    times["forward + pictures"] = time.perf_counter() - start
    start = time.perf_counter()
    inside_plots.saliency_html(x, inside.saliency(net, x))
    times["saliency + pictures"] = time.perf_counter() - start
    start = time.perf_counter()
    inside.breaking_points(net, image)
    times["where it breaks"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    return times


def percentiles(seconds: list[float]) -> str:
    ms = sorted(t * 1000 for t in seconds)
    return f"p50 {statistics.median(ms):7.2f} ms   p95 {ms[int(0.95 * (len(ms) - 1))]:7.2f} ms"


def main(models_dir: str | None = None) -> None:
    store = ModelStore(models_dir)
    images = normalize(read_mnist().x_valid[:INPUTS])  # (100, 28, 28) float32 in [0, 1]
    rng = np.random.default_rng(0)
    changes = [inside.Perturbation(shift_x=int(rng.integers(-2, 3)), rotation=float(rng.integers(-3, 4) * 5),
                                   noise=float(rng.choice([0.0, 0.1]))) for _ in range(INPUTS)]
    print(f"{INPUTS} inputs, one thread, numpy {np.__version__}")
    for model in MODELS:
        net, source = network(store, model)
        for i in range(WARMUP):
            one_input(net, images[i], changes[i])
        runs = [one_input(net, image, change) for image, change in zip(images, changes, strict=True)]
        print(f"\n{model} ({source})")
        for part in runs[0]:
            print(f"  {part:<22}{percentiles([r[part] for r in runs])}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
