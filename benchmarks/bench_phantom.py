"""Time the phantom generator on one CPU core: in memory and written to disk (HAM10000 layout).

    OMP_NUM_THREADS=1 python benchmarks/bench_phantom.py [--n 1000] [--size 256] [--difficulty 0.5]

The design target is 1,000 images at 256×256 in under a minute on one core.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy is imported

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402

from dermfuse import vocab  # noqa: E402
from dermfuse.data.phantom import Shortcut, generate_dataset, generate_phantom  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--difficulty", type=float, default=0.5)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    shortcut = Shortcut("mel", 0.9)
    classes = vocab.HAM10000_CLASSES

    start = time.perf_counter()
    for i in range(args.n):
        generate_phantom(classes[i % len(classes)], i, args.size, args.difficulty, shortcut)
    memory = time.perf_counter() - start
    print(f"in memory: {args.n} images {args.size}x{args.size} in {memory:.1f} s = "
          f"{args.n / memory:.0f} images/s ({1000 * memory / args.n:.1f} ms/image)")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset(tmp, args.n, size=args.size, difficulty=args.difficulty, shortcut=shortcut, progress=False)
        disk = time.perf_counter() - start
    print(f"to disk:   {args.n} images {args.size}x{args.size} in {disk:.1f} s = "
          f"{args.n / disk:.0f} images/s ({1000 * disk / args.n:.1f} ms/image, JPEG 95 + PNG mask + CSV)")  # fmt: skip


if __name__ == "__main__":
    main()
