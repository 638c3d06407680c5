"""Training throughput (images/s) of each stage, per preset, in fp32 and bf16 autocast.

    .venv/bin/python benchmarks/bench_train.py                                  # tiny and paper, this CPU
    .venv/bin/python benchmarks/bench_train.py --presets tiny --batch-size 32 --steps 5
    .venv/bin/python benchmarks/bench_train.py --device cuda --batch-size 32    # a GPU

One optimisation step is what ``train.loop.fit`` does: forward under autocast, the stage's loss
(BCE + soft Dice for the segmenter, cross-entropy for the classifier), backward, gradient clipping,
fused AdamW. Inputs are random tensors at the preset's sizes, so data loading (JPEG decoding,
augmentation, the lesion crop) is not counted: it runs in DataLoader workers beside the step.
Channels-last as in training. Prints a Markdown table; quote it with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dermfuse import create_model  # noqa: E402
from dermfuse.models import PRESETS  # noqa: E402
from timing import median_seconds  # noqa: E402
from train.segmenter import segmentation_loss  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def step_function(model, part: str, batch: int, device: torch.device, dtype):
    """One training step of ``part`` on random inputs, as a closure."""
    network = getattr(model, part).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4, fused=True)
    size = model.segmentation_size if part == "segmenter" else model.image_size
    image = torch.randn(batch, 3, *size, device=device).contiguous(memory_format=torch.channels_last)
    if part == "segmenter":
        target = (torch.rand(batch, 1, *size, device=device) > 0.5).float()
        loss_fn = lambda: segmentation_loss(network(image), target)  # noqa: E731
    else:
        lesion = torch.randn_like(image)
        age, sex, site = (torch.full((batch,), 50.0, device=device), torch.zeros(batch, dtype=torch.long, device=device),
                          torch.zeros(batch, dtype=torch.long, device=device))  # fmt: skip
        labels = torch.randint(0, len(model.classes), (batch,), device=device)
        loss_fn = lambda: F.cross_entropy(network(image, lesion, age, sex, site).float(), labels)  # noqa: E731

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def images_per_second(step, batch: int, steps: int, warmup: int) -> float:
    return batch / median_seconds(step, steps, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "paper"], choices=sorted(PRESETS))
    parser.add_argument("--parts", nargs="+", default=["segmenter", "classifier"], choices=["segmenter", "classifier"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (median)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", default=None, help="write the numbers here too")
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"training throughput, batch {args.batch_size}, median of {args.steps} steps after {args.warmup} warm-up, {where}, "
          f"torch {torch.__version__}")  # fmt: skip
    print("| preset | stage | input | fp32 (img/s) | bf16 autocast (img/s) |\n|---|---|---|---|---|")
    rows = []
    for preset in args.presets:
        for part in args.parts:
            results = {}
            for precision in args.precisions:
                torch.manual_seed(0)
                model = create_model(preset)
                step = step_function(model, part, args.batch_size, device, DTYPES[precision])
                results[precision] = images_per_second(step, args.batch_size, args.steps, args.warmup)
            size = model.segmentation_size if part == "segmenter" else model.image_size
            cells = " | ".join(f"{results[p]:.1f}" if p in results else "–" for p in ("fp32", "bf16"))
            print(f"| {preset} | {part} | {size[0]}×{size[1]} | {cells} |", flush=True)
            rows.append({"preset": preset, "stage": part, "input": list(size), "images_per_s": results})
    if args.json:
        numbers = {"device": where, "torch": torch.__version__, "batch_size": args.batch_size, "steps": args.steps, "rows": rows}
        Path(args.json).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
