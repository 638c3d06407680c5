"""``python -m dermfuse.data.phantom``: write a phantom dataset in the HAM10000 layout."""

from __future__ import annotations

import argparse
import sys

from dermfuse.data.phantom import Shortcut, contact_sheet, generate_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dermfuse.data.phantom", description=__doc__)
    parser.add_argument("--out", help="output folder (HAM10000 layout)")
    parser.add_argument("--n", type=int, default=700, help="number of images (default 700)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--difficulty", type=float, default=None,
                        help="0 prototypical … 1 overlapping (default: 0.5 for the dataset; the contact sheet "
                             "ramps from 0 to 1 across its columns)")  # fmt: skip
    parser.add_argument("--class-weights", choices=("balanced", "ham10000"), default="balanced")
    parser.add_argument("--shortcut", type=Shortcut.parse, default=None, metavar="TARGET:STRENGTH[:MODE]",
                        help="plant violet marker ink, e.g. mel:0.9 or mel:1:reversed (modes: present, reversed, "
                             "absent, always)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    parser.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet (one row per class)")
    args = parser.parse_args(argv)
    if args.out is None and args.contact_sheet is None:
        parser.error("give --out DIR, --contact-sheet PNG, or both")
    if args.contact_sheet:
        contact_sheet(args.contact_sheet, seed=args.seed, difficulty=args.difficulty, shortcut=args.shortcut)
        print(f"wrote {args.contact_sheet}")
    if args.out:
        weights = None if args.class_weights == "balanced" else args.class_weights
        difficulty = 0.5 if args.difficulty is None else args.difficulty
        csv_path = generate_dataset(args.out, args.n, seed=args.seed, size=args.size, difficulty=difficulty,
                                    class_weights=weights, shortcut=args.shortcut, workers=args.workers,
                                    overwrite=args.overwrite)  # fmt: skip
        print(f"wrote {args.n} phantoms, metadata in {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
