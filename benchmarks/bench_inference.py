"""Inference cost of a diagnosis, with and without explanations, against the usual way of doing it.

    .venv/bin/python benchmarks/bench_inference.py --preset paper --repeats 5
    .venv/bin/python benchmarks/bench_inference.py --model checkpoints/dermfuse-small-ham10000 --repeats 9

Batch 1, one dermoscopy-sized image (a real PH2 image from ../shared/data/real if present, else a
generated phantom at 600×600). Medians of ``--repeats`` after a warm-up, all in one run; what is compared
is timed in turn within each repetition, so load from elsewhere on the machine slows both sides alike:
(a) plain diagnosis: segment + classify (the pipeline's fast path: bf16 + channels-last if the
    CPU supports it);
(b) explained diagnosis: (a) + Grad-CAM of both streams through the head alone;
(c) the same networks the way a typical project runs them: eager fp32, a forward for the scores,
    then one standard pytorch-grad-cam ``GradCAM`` call per stream (full backward each).
And batch-16 throughput, fast path vs eager fp32, timed first, in a fresh process's state as ``dermfuse evaluate``
runs it (timed after (a)–(c), the eager fp32 batches ran about a fifth slower): (d) the networks alone (segmenter, both encoders, head, on
ready tensors); (e) evaluation, ``dermfuse evaluate``'s path (decode-free: segment, mask at the image's size,
lesion image, classify, assessability and OOD checks; ``describe=False``); (e′) the same on 16 images of the
model's HAM10000 test split (with ``--model``, when ``../shared/data/HAM10000`` is there: 256×256 images with their
age, sex and site, what ``dermfuse evaluate`` scores the model on); (f) full diagnoses as the CLI writes them
(e) + the ABCD criteria, measurements and skin tone. The per-image CPU work of (e)–(f) is the same on both paths
and grows with the image's pixels, so it caps their ratio most on the large image.
With ``--preset`` the weights are random (speed does not depend on them); ``--model`` times a saved
model (its own weights, so the masks and lesion crops are the real ones). Prints a markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from dermfuse import DermFuse, create_model
from dermfuse.data.io import load_image
from dermfuse.explain import standard_gradcam
from dermfuse.models import PRESETS
from dermfuse.models.flips import flipped_views, repeated, view_mean
from dermfuse.pipeline import Case, DermFusePipeline
from timing import interleaved_medians, median_seconds

PEER_PLAIN_S = 0.34  # the peer's plain (unexplained) prediction per image on this CPU, quoted from issue 13
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_IMAGE = SHARED / "real" / "images" / "IMD002.jpg"


def test_image():
    if REAL_IMAGE.is_file():
        return load_image(REAL_IMAGE), f"real PH2 image {REAL_IMAGE.name}"
    from dermfuse.data.phantom import generate_phantom

    phantom = generate_phantom("mel", seed=0, size=600)
    return load_image(phantom.image), "phantom 600×600"


def ham10000_test_cases(model_folder: str | None, count: int) -> list[Case] | None:
    """The first ``count`` HAM10000 test-split images of a saved model's ``splits.csv``, decoded, with their
    metadata; ``None`` without a model folder, its split or the data."""
    from dermfuse.data.readers import read_dataset
    from dermfuse.data.splits import read_manifest

    splits = Path(model_folder or "") / "splits.csv"
    if not (model_folder and splits.is_file() and (SHARED / "HAM10000").is_dir()):
        return None
    manifest = read_manifest(splits, paths=False)
    test = set(manifest.loc[(manifest["split"] == "test") & (manifest["source"] == "ham10000"), "image_id"])
    table = read_dataset(SHARED / "HAM10000")
    rows = table[table["image_id"].isin(test)].head(count)
    return [Case(load_image(row.image_path), row.age, row.sex, row.site, image_id=row.image_id) for row in rows.itertuples()]


def typical_explained(pipeline: DermFusePipeline, image, metadata) -> None:
    """Eager fp32: segment, lesion image, a forward for the scores (of the model's flip views), then one GradCAM call
    per stream (on the image as it is)."""
    _, masks, _ = pipeline.segment([image])
    lesion = pipeline.make_lesion_image(image, masks[0])
    size, views = pipeline.model.image_size, pipeline.model.flip_views
    x, les = pipeline._batch([image], size), pipeline._batch([lesion], size)
    with torch.no_grad():
        logits = pipeline.model.classifier(flipped_views(x, views), flipped_views(les, views),
                                           *(repeated(m, views) for m in metadata))
        top = int(view_mean(logits, views).argmax())
    standard_gradcam(pipeline.model.classifier, x, les, metadata, top)


def networks_only(pipeline: DermFusePipeline, images, lesions, metadata) -> None:
    """Segmenter, both encoders (on the model's flip views) and the head on ``images`` (tensors made once, outside the
    timing)."""
    networks, views = pipeline._networks, pipeline.model.flip_views
    with torch.inference_mode(), pipeline._autocast():
        networks["segmenter"](images[0])
        maps = [networks[stream].forward_features(flipped_views(x, views)).float()
                for stream, x in (("image", images[1]), ("lesion", lesions))]
    pipeline.head_logits(*maps, metadata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--model", default=None, help="a saved model folder instead of a random --preset")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--json", default=None, help="write the numbers here too")
    args = parser.parse_args()
    torch.manual_seed(0)
    image, description = test_image()
    model = DermFuse.from_pretrained(args.model) if args.model else create_model(args.preset)
    fast = DermFusePipeline(model)
    if not fast.fast:
        print("note: this CPU has no bf16 support; the fast path is fp32")
    eager = DermFusePipeline(DermFuse(**model.config), fast=False)
    eager.model.load_state_dict(model.state_dict())
    metadata = (torch.tensor([55.0]), torch.tensor([1]), torch.tensor([1]))
    case = dict(age=55, sex="male", site="posterior torso")

    batch = [Case(image, **case) for _ in range(args.batch)]
    test_split = ham10000_test_cases(args.model, args.batch)
    batch_repeats = max(3, args.repeats // 2)
    work = {}
    for name, pipeline in (("fast", fast), ("eager", eager)):
        lesion = pipeline.make_lesion_image(image, pipeline.segment([image])[1][0])
        tensors = (pipeline._batch([image] * args.batch, model.segmentation_size), pipeline._batch([image] * args.batch, model.image_size))
        lesions = pipeline._batch([lesion] * args.batch, model.image_size)
        encoded = {k: v.repeat(args.batch) for k, v in zip(("age", "sex", "site"), metadata)}
        work[name] = {
            "networks": lambda p=pipeline, t=tensors, l=lesions, e=encoded: networks_only(p, t, l, e),
            "evaluation": lambda p=pipeline: p.predict(batch, describe=False),
            "evaluation_test_split": lambda p=pipeline: p.predict(test_split, describe=False),
            "diagnosis": lambda p=pipeline: p.predict(batch),
        }
    seconds = {"fast": {}, "eager": {}}
    kinds = ("networks", "evaluation", *(("evaluation_test_split",) if test_split else ()), "diagnosis")
    for kind in kinds:  # each kind's two paths timed in turn
        medians = interleaved_medians({name: work[name][kind] for name in seconds}, batch_repeats)
        for name in seconds:
            seconds[name][kind] = medians[name]

    single = interleaved_medians({"plain": lambda: fast(image, **case, explain=False),
                                  "explained": lambda: fast(image, **case, explain=True)}, args.repeats)
    plain, explained = single["plain"], single["explained"]
    # Timed apart: interleaved with them, the plain call after it ran about a third faster than alone (cause not traced).
    typical = median_seconds(lambda: typical_explained(eager, image, metadata), args.repeats)

    numbers = {
        "preset": args.model or args.preset, "image": description, "threads": torch.get_num_threads(), "fast_path_bf16": fast.fast,
        "plain_s": plain, "explained_s": explained, "typical_explained_s": typical,
        "explained_over_plain": explained / plain, "explained_over_typical": explained / typical,
        "batch": args.batch, "repeats": args.repeats,
    }
    for work in kinds:
        numbers[f"{work}_fast_images_per_s"] = args.batch / seconds["fast"][work]
        numbers[f"{work}_eager_images_per_s"] = args.batch / seconds["eager"][work]
        numbers[f"{work}_speedup"] = seconds["eager"][work] / seconds["fast"][work]
    print(f"{'model ' + args.model if args.model else 'preset ' + args.preset}, {description}, {numbers['threads']} threads, medians of {args.repeats}")
    print("| measurement | value | target |\n|---|---|---|")
    print(f"| (a) plain diagnosis, batch 1 | {plain * 1e3:.0f} ms | |")
    print(f"| (b) explained diagnosis (+ both CAMs through the head) | {explained * 1e3:.0f} ms | |")
    print(f"| (c) typical: eager fp32 + one full GradCAM per stream | {typical * 1e3:.0f} ms | |")
    print(f"| (b) / (a) | {numbers['explained_over_plain']:.2f} | ≤ 1.15 |")
    print(f"| (b) / (c) | {numbers['explained_over_typical']:.2f} | ≤ 0.35 |")
    print(f"| (b) explained diagnosis, seconds | {explained:.3f} s | < {PEER_PLAIN_S} s (a published Keras HAM10000 "
          "classifier's plain prediction on this CPU, as measured in issue 13) |")
    labels = {"networks": "(d) networks alone", "evaluation": f"(e) evaluation ({description})",
              "evaluation_test_split": "(e′) evaluation (HAM10000 test-split images, 256×256)", "diagnosis": "(f) full diagnoses"}
    for work in kinds:
        label = labels[work]
        print(f"| batch-{args.batch} {label}: fast path / eager fp32 | {numbers[f'{work}_fast_images_per_s']:.1f} / "
              f"{numbers[f'{work}_eager_images_per_s']:.1f} images/s = {numbers[f'{work}_speedup']:.2f}× | ≥ 2.5× |")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
