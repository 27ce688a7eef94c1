"""Canvas drawing to probabilities in the server process, alone and from many threads.

    python -m benchmarks.bench_inference [models dir]
    python -m benchmarks.bench_inference MODELS_DIR RUN_ID RUN_ID ...   # models side by side

Uses the current run of the models folder (train one first: python -m mnist_core.train).
Reports median and p95 of: the model call alone (ONNX Runtime), the whole path from a
280x280 RGBA canvas (MNIST steps + model), the same from 8 threads at once, and, for
comparison, the notebook's `model.predict` on one image. Given run ids, it times only the
first two for each run, interleaved (each call of one run next to the same call of the
others), and prints each run's median as a ratio of the first run's.
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


def compare(models_dir: str, run_ids: list[str]) -> None:
    """The model call and the canvas path of each run, interleaved, as ratios of the first."""
    store = ModelStore(models_dir)
    runs = [store.get(run_id) for run_id in run_ids]
    classifiers = [Classifier(run.onnx_path) for run in runs]
    images = canvases(50)
    xs = [mnist_steps(image).x for image in images]
    model_times = [[] for _ in runs]
    full_times = [[] for _ in runs]
    for i in range(CALLS + 20):
        for classifier, model_t, full_t in zip(classifiers, model_times, full_times, strict=True):
            start = time.perf_counter()
            classifier.predict_proba(xs[i % len(xs)])
            model_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            classifier.predict_proba(mnist_steps(images[i % len(images)]).x)
            full_t.append(time.perf_counter() - start)
    base_model = statistics.median(model_times[0][20:])
    base_full = statistics.median(full_times[0][20:])
    for run, model_t, full_t in zip(runs, model_times, full_times, strict=True):
        print(f"{run.run_id} ({run.config.model})")
        print(f"  model call only:   {percentiles(model_t[20:])}   "
              f"{statistics.median(model_t[20:]) / base_model:.2f}x the first")
        print(f"  canvas -> probabilities: {percentiles(full_t[20:])}   "
              f"{statistics.median(full_t[20:]) / base_full:.2f}x the first")


def main(models_dir: str | None = None, *run_ids: str) -> None:
    if run_ids:
        compare(models_dir, list(run_ids))
        return
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
