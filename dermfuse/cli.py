"""The ``dermfuse`` command line."""

from __future__ import annotations

import argparse
import sys

from pathlib import Path

from .models import PRESETS, create_model
from .sources import MODEL_ENV, default_model_source


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


def predict(args: argparse.Namespace) -> int:
    """Diagnose an image, a folder or a CSV of images; write CSV + JSON (+ overlays, ISIC files)."""
    from .predict import cases_from, predict_all, write_outputs

    cases = cases_from(args.input, args.age, args.sex, args.site)
    pipeline = load_pipeline(args)
    explain = args.overlays or args.explain
    undecodable = []  # (image id, error): files whose header read but whose pixels did not
    results = predict_all(pipeline, cases, batch_size=args.batch_size, explain=explain, progress=len(cases) > 1,
                          undecodable=undecodable)
    if not results:
        raise ValueError("no image could be decoded, so nothing was written:\n  "
                         + "\n  ".join(f"{image_id}: {error}" for image_id, error in undecodable))
    written = write_outputs(results, Path(args.out), overlays=args.overlays, isic_submission=args.isic_submission,
                            scores_if_not_assessable=args.scores_if_not_assessable)
    for r in results[:20]:
        verdict = f"{r.top_class} {r.top_probability:.2f}" if r.assessable else "NOT ASSESSABLE, no diagnosis"
        print(f"{r.image_id}: {verdict}" + "".join(f"\n  - {reason}" for reason in r.reasons)
              + "".join(f"\n  ! {w}" for w in r.warnings))
    if len(results) > 20:
        print(f"... {len(results) - 20} more")
    print(f"wrote {len(written)} files to {args.out}")
    if undecodable:
        print(f"dermfuse predict: error: {len(undecodable)} of the {len(cases)} images could not be decoded and are not "
              f"in the files written (the {len(results)} others are"
              + ("; the ISIC submission lacks them too, so a scorer will refuse it until they are fixed"
                 if args.isic_submission else "")
              + "): re-download or re-export these and run again\n  "
              + "\n  ".join(f"{image_id}: {error}" for image_id, error in undecodable), file=sys.stderr)
        return 1
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """Evaluate a model on a dataset root (any supported layout) or a split of it: metrics + figures."""
    from .data.readers import read_dataset
    from .data.splits import read_manifest
    from .evaluate import evaluate as run_evaluation
    from .evaluate import model_splits, training_overlap, write_evaluation_report

    table = read_dataset(args.data, **({"layout": args.layout} if args.layout else {}))
    if args.manifest:
        manifest = read_manifest(args.manifest, paths=False)  # a run's or a published one
        # A manifest can span several datasets (e.g. HAM10000 + ISIC 2018 Task 1): take the rows of this one.
        sources = set(table["source"])
        keep = set(manifest.loc[(manifest["split"] == args.split) & manifest["source"].isin(sources), "image_id"])
        if not keep:
            raise ValueError(f"{args.manifest} has no rows of {', '.join(sorted(sources))} in split {args.split!r}")
        table = table[table["image_id"].isin(keep)]
        if len(table) != len(keep):
            raise ValueError(f"{len(keep) - len(table)} images of split {args.split!r} in {args.manifest} are not in {args.data}")
    splits = model_splits(args.model)
    if args.exclude_training_images and splits is not None:
        table = table[~table["image_id"].isin(splits.loc[splits["split"].isin(["train", "val"]), "image_id"])]
        if table.empty:
            raise ValueError("every image was used to fit this model: nothing is left to evaluate")
    if args.limit:
        table = table.head(args.limit)
    overlap = training_overlap(splits, table["image_id"])
    if "warning" in overlap:
        print(f"WARNING: {overlap['warning']} (--exclude-training-images leaves them out)", file=sys.stderr)
    pipeline = load_pipeline(args)
    metrics, arrays = run_evaluation(pipeline, table.reset_index(drop=True), batch_size=args.batch_size)
    metrics["data"] = {"root": str(args.data), "manifest": args.manifest, "split": args.split if args.manifest else "all"}
    metrics["training_images"] = overlap
    write_evaluation_report(metrics, arrays, list(pipeline.model.classes), pipeline.model.temperature, Path(args.out))
    seg, cls = metrics.get("segmentation"), metrics.get("classification")
    if seg:
        print(f"segmentation ({seg['images']} images): Dice {seg['dice']:.3f}, IoU {seg['iou']:.3f}, "
              f"thresholded Jaccard {seg['thresholded_jaccard']:.3f}")
    if cls:
        auc = "undefined (a class is missing)" if cls["macro_auc"] is None else f"{cls['macro_auc']:.3f}"
        print(f"classification ({cls['cases']} cases): balanced accuracy {cls['balanced_accuracy']:.3f}, "
              f"macro AUC {auc}, ECE {cls['ece']:.3f} (uncalibrated {metrics['classification_uncalibrated_ece']:.3f})")
    if "warning" in overlap:
        print(f"WARNING: {overlap['warning']}")
    print(f"wrote {args.out}/metrics.json and figures")
    return 0


def followup(args: argparse.Namespace) -> int:
    """Compare a current image of a lesion with a previous one: the change in size, shape, colours and scores."""
    import json

    from PIL import Image

    from .followup import compare
    from .pipeline import Case

    pipeline = load_pipeline(args)
    cases = [Case(path, args.age, args.sex, args.site, image_id=Path(path).stem) for path in (args.previous, args.current)]
    previous, current = pipeline.predict(cases)
    result = compare(current, previous)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "followup.json").write_text(json.dumps({"model": pipeline.model_info(), **result.to_dict()}, indent=1))
    Image.fromarray(result.picture).save(out / "followup.png")
    change, info = result.change, pipeline.model_info()
    print(f"model {info['name']}, trained on {info['dataset']}: research and teaching software, not a diagnosis")
    for when, numbers, diagnosis in (("previous", result.previous, previous), ("current", result.current, current)):
        print(f"{when} {numbers['image_id']}: {numbers['top_class']} {numbers['scores'][numbers['top_class']]:.2f}, "
              f"area {numbers['area_px']:,.0f} px, {numbers['colour_count']} colours"
              + "".join(f"\n  ! {line}" for line in diagnosis.warnings))
    print(f"change: area {change['area_percent']:+.1f} %, equivalent diameter {change['equivalent_diameter_percent']:+.1f} %, "
          f"greatest diameter {change['greatest_diameter_percent']:+.1f} %, outlines overlap IoU {change['overlap_iou']:.2f}")
    if change["colours_new"] or change["colours_gone"]:
        print(f"colours: new {', '.join(change['colours_new']) or 'none'}; gone {', '.join(change['colours_gone']) or 'none'}")
    largest = sorted(change["scores"].items(), key=lambda item: -abs(item[1]))[:3]
    print("largest score changes: " + ", ".join(f"{name} {delta:+.2f}" for name, delta in largest)
          + (" (the top class changed)" if change["top_class_changed"] else ""))
    for line in result.warnings:
        print(f"  ! {line}")
    for line in result.notes:
        print(f"  note: {line}")
    print(f"wrote {out / 'followup.json'} and {out / 'followup.png'} (previous aligned | current, both outlines on each)")
    return 0


def load_pipeline(args: argparse.Namespace):
    """The pipeline of ``--model`` on the path ``--fast`` asks for."""
    from .pipeline import DermFusePipeline

    return DermFusePipeline.from_pretrained(args.model, fast=None if args.fast == "auto" else args.fast == "on")


def add_patient_arguments(parser: argparse.ArgumentParser, age_help: str = "patient age in years") -> None:
    parser.add_argument("--age", type=float, help=age_help)
    parser.add_argument("--sex", help="female, male or unknown")
    parser.add_argument("--site", help="lesion site (unified vocabulary or a HAM10000 localization)")


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=default_model_source(),
                        help=f"local folder or Hugging Face Hub repo id (default: ${MODEL_ENV} or the shipped real-data model)")
    parser.add_argument("--fast", choices=("auto", "on", "off"), default="auto",
                        help="bf16 autocast + channels-last where supported (default: auto)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dermfuse", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("info", help="parameter counts of a model preset")
    p.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    p.set_defaults(run=info)

    p = commands.add_parser("predict", help="diagnose an image, a folder of images or a CSV (image, age, sex, site)")
    p.add_argument("input", help="image file, folder of images, or CSV with an 'image' column")
    add_model_argument(p)
    add_patient_arguments(p, "patient age in years (for a single image or a folder)")
    p.add_argument("--out", default="predictions", help="output folder (default: predictions/)")
    p.add_argument("--overlays", action="store_true", help="also write a PNG per image: outline and each network's heatmap, "
                   "titled, with colour bar, top scores, warnings and the model")
    p.add_argument("--explain", action="store_true", help="compute Grad-CAM and lesion focus (implied by --overlays)")
    p.add_argument("--isic-submission", action="store_true", help="also write the ISIC challenge CSV and masks")
    p.add_argument("--scores-if-not-assessable", action="store_true",
                   help="also write the scores of images that are not assessable (withheld by default)")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(run=predict)

    p = commands.add_parser("evaluate", help="metrics and figures of a model on a dataset (or one split of it)")
    p.add_argument("data", help="dataset root in any supported layout (HAM10000, ISIC, PH2, folder, a phantom set)")
    add_model_argument(p)
    p.add_argument("--layout", help="force a layout when the folder holds several (see dermfuse.data.read_dataset)")
    p.add_argument("--manifest", help="split manifest CSV (from training); evaluate only --split of it")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--limit", type=int, help="evaluate only the first N images")
    p.add_argument("--exclude-training-images", action="store_true",
                   help="leave out the images the model was trained or calibrated on (from its splits.csv)")
    p.add_argument("--out", default="evaluation", help="output folder (default: evaluation/)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(run=evaluate)

    p = commands.add_parser("followup", help="compare a lesion's current image with a previous one (change in size, "
                            "shape, colours and scores)")
    p.add_argument("previous", help="the earlier image of the lesion")
    p.add_argument("current", help="the current image of the same lesion, same dermatoscope and magnification")
    add_model_argument(p)
    add_patient_arguments(p)
    p.add_argument("--out", default="followup", help="output folder for followup.json and followup.png (default: followup/)")
    p.set_defaults(run=followup)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as error:  # bad input or missing files: say what, not a traceback
        print(f"dermfuse {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
