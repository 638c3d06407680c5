"""``python -m train COMMAND --key=value ...`` (also under ``torchrun``)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m train COMMAND [--key=value ...]

commands:
  segmenter   stage 1: fit the lesion segmenter (BCE + soft Dice) on images with masks
  classifier  stage 2: fit the classifier on lesion images made by a stage-1 model, then calibrate
  push        save a run's model with its model card and upload it to the Hugging Face Hub
  demo        build the phantom demo checkpoint (tiny preset, CPU) in checkpoints/
  ablation    the paper's ablation on phantoms (baseline, +lesion, +metadata, full, concat; several seeds);
              with --shortcut=mel:0.9 the shortcut experiment
  real        cross-validate on the real PH2 images, then build the melanoma-vs-nevus checkpoint
  ham10000    the real-data model: small preset on HAM10000 + ISIC 2018 Task 1 (both stages, scored
              through the pipeline, exported to checkpoints/dermfuse-small-ham10000); resumable
  real-ablation  the paper's claims on real HAM10000 images: the ablation (frozen early stages, cached),
              lesion focus against the expert masks, and a real artefact shortcut (docs/results/real_ablation.json)
  gate        fit the assessability gate of a model on real dermoscopy vs non-dermoscopy images, store it
              in the model's config and measure it per source (docs/results/gate.json)
  skin-tone   store the skin-tone (ITA) bands of a model's training images in its config (the app's caution)
              and measure the model per band (docs/results/skin_tone.json)
  operating-points  fit melanoma thresholds (95 % sensitivity, 80 % specificity) on a model's validation
              split, store them in its config and card, measure them on its test split
  compute-paths  a model's test-split numbers on the fast (bf16) and the fp32 path, how often they agree,
              and fp16 storage's effect on each (into its metrics and card; docs/results/compute_paths.json)
  metadata-benchmark  age, sex and site alone on the real HAM10000 / ISIC 2019 tables, against
              logistic regression and gradient boosting (5-fold, grouped by lesion)

Settings are --key=value (--flag alone means true); `python -m train COMMAND --help` lists them.
Multi-GPU / multi-node: torchrun --nproc_per_node=N -m train COMMAND ..."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "metadata-benchmark":  # its own argparse options (--help included)
        from experiments.metadata_benchmark import main as benchmark

        return benchmark(rest)
    if command == "segmenter":
        from train.segmenter import SegmenterConfig as config_class, main as run
    elif command == "classifier":
        from train.classifier import ClassifierConfig as config_class, main as run
    elif command == "push":
        from publish.push import PushConfig as config_class, main as run
    elif command == "demo":
        from experiments.demo import DemoConfig as config_class, main as run
    elif command == "ablation":
        from experiments.ablation import AblationConfig as config_class, main as run
    elif command == "real":
        from experiments.real import RealConfig as config_class, main as run
    elif command == "ham10000":
        from experiments.ham10000 import HAM10000Config as config_class, main as run
    elif command == "real-ablation":
        from experiments.real_ablation import RealAblationConfig as config_class, main as run
    elif command == "gate":
        from experiments.gate import GateConfig as config_class, main as run
    elif command == "skin-tone":
        from experiments.skin_tone import SkinToneConfig as config_class, main as run
    elif command == "operating-points":
        from experiments.operating_points import OperatingPointsConfig as config_class, main as run
    elif command == "compute-paths":
        from experiments.compute_paths import ComputePathsConfig as config_class, main as run
    else:
        print(f"unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    if "--help" in rest or "-h" in rest:
        from train.config import describe_fields

        print(describe_fields(config_class))
        return 0
    try:
        return run(rest)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
