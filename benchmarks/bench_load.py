"""How long loading MNIST takes: `python -m benchmarks.bench_load [repeats]`."""

import statistics
import sys
import time

from mnist_core.data import read_mnist


def main(repeats: int = 7) -> None:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        data = read_mnist()
        times.append(time.perf_counter() - start)
    print(f"read_mnist() from {data.source} (gunzip + SHA-256 + IDX checks), {repeats} runs:")
    print(f"  median {statistics.median(times):.3f} s   min {min(times):.3f} s   "
          f"max {max(times):.3f} s")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
