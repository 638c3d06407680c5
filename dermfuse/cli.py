"""The ``dermfuse`` command line."""

from __future__ import annotations

import argparse
import sys

from .models import PRESETS, create_model


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def info(args: argparse.Namespace) -> int:
    """Print the parameter counts of a preset, part by part."""
    model = create_model(args.preset)
    parts = {
        "segmenter": model.segmenter,
        "segmenter encoder": model.segmenter.encoder,
        **{f"classifier {name} encoder": encoder for name, encoder in model.classifier.encoders().items()},
        "classifier": model.classifier,
    }
    print(f"preset {args.preset}: segmenter {model.segmenter.encoder_name} at {model.segmentation_size}, "
          f"classifier {model.classifier.encoder_name} at {model.image_size}")
    for name, part in parts.items():
        print(f"  {name:<28} {count_parameters(part):>12,}")
    total = count_parameters(model)
    print(f"  {'total':<28} {total:>12,}  ({total * 4 / 2**20:.1f} MiB as float32)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dermfuse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("info", help="parameter counts of a model preset")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.set_defaults(run=info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
