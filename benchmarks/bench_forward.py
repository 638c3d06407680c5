"""Median forward time of the segmenter and the classifier, batch 1, on this machine's CPU.

    .venv/bin/python benchmarks/bench_forward.py --preset paper --repeats 7

Eager fp32, no gradients, after two warm-up calls. Prints one table; numbers depend on the CPU
and on what else runs, so quote the medians with the machine.
"""

from __future__ import annotations

import argparse

import torch

from dermfuse import create_model
from dermfuse.models import PRESETS
from timing import median_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model(args.preset).eval()
    seg_in = torch.randn(1, 3, *model.segmentation_size)
    image = torch.randn(1, 3, *model.image_size)
    metadata = torch.tensor([55.0]), torch.tensor([1]), torch.tensor([0])
    with torch.inference_mode():
        segmenter = median_seconds(lambda: model.segmenter(seg_in), args.repeats, warmup=2)
        classifier = median_seconds(lambda: model(image, image, *metadata), args.repeats, warmup=2)
    print(f"preset {args.preset}, batch 1, {torch.get_num_threads()} threads, eager fp32, median of {args.repeats}")
    print(f"| part | input | median forward (ms) |\n|---|---|---|")
    print(f"| segmenter ({model.segmenter.encoder_name}) | {model.segmentation_size} | {segmenter * 1e3:.1f} |")
    print(f"| classifier (2× {model.classifier.encoder_name}) | {model.image_size} | {classifier * 1e3:.1f} |")


if __name__ == "__main__":
    main()
