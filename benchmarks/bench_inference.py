"""Canvas drawing to probabilities in the server process, alone and from many threads.

    python -m benchmarks.bench_inference [models dir]

Uses the current run of the models folder (train one first: python -m mnist_core.train).
Reports median and p95 of: the model call alone (ONNX Runtime), the whole path from a
280x280 RGBA canvas (MNIST steps + model), the same from 8 threads at once, and, for
comparison, the notebook's `model.predict` on one image.
"""

import statistics
import sys
import threading
import time

import numpy as np

from mnist_core.data import read_mnist
from mnist_core.inference import Classifier
from mnist_core.preprocess import mnist_steps
from mnist_core.runs.store import ModelStore

CALLS = 500
THREADS = 8


def canvases(count: int) -> list[np.ndarray]:
    """Real validation digits drawn large on a 280x280 RGBA canvas."""
    from PIL import Image

    data = read_mnist()
    out = []
    for digit in data.x_valid[:count]:
        big = np.asarray(Image.fromarray(digit).resize((224, 224), Image.BILINEAR))
        gray = np.zeros((280, 280), np.uint8)
        gray[28:252, 28:252] = big
        out.append(np.dstack([gray, gray, gray, np.full_like(gray, 255)]))
    return out


def percentiles(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"median {statistics.median(ms):.3f} ms   p95 {ms[int(0.95 * (len(ms) - 1))]:.3f} ms"


def main(models_dir: str | None = None) -> None:
    run = ModelStore(models_dir).current()
    if run is None:
        raise SystemExit("No trained model: python -m mnist_core.train")
    classifier = Classifier(run.onnx_path)
    images = canvases(50)
    x = mnist_steps(images[0]).x
    for _ in range(20):
        classifier.predict_proba(x)

    model_times, full_times = [], []
    for i in range(CALLS):
        start = time.perf_counter()
        classifier.predict_proba(x)
        model_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        classifier.predict_proba(mnist_steps(images[i % len(images)]).x)
        full_times.append(time.perf_counter() - start)
    print(f"model {run.run_id} ({run.config.model})")
    print(f"ONNX Runtime, model call only:         {percentiles(model_times)}")
    print(f"canvas -> MNIST steps -> probabilities: {percentiles(full_times)}")

    threaded: list[float] = []
    lock = threading.Lock()

    def visitor(seed: int) -> None:
        mine = []
        for i in range(CALLS // THREADS * 2):
            start = time.perf_counter()
            classifier.predict_proba(mnist_steps(images[(i + seed) % len(images)]).x)
            mine.append(time.perf_counter() - start)
        with lock:
            threaded.extend(mine)

    threads = [threading.Thread(target=visitor, args=(s,)) for s in range(THREADS)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    print(f"same from {THREADS} threads at once:      {percentiles(threaded)}   "
          f"({len(threaded) / wall:,.0f} drawings/s in all)")

    import keras

    model = keras.saving.load_model(run.keras_path, safe_mode=True)
    model.predict(x, verbose=0)
    keras_times = []
    for _ in range(30):
        start = time.perf_counter()
        model.predict(x, verbose=0)
        keras_times.append(time.perf_counter() - start)
    print(f"notebook-style keras model.predict:    {percentiles(keras_times)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
