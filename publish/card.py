"""The model card (``README.md``) of a trained dermfuse model, written from its run's files.

Everything in it comes from what the run recorded: the model's ``config.json`` (labels, sizes,
normalisation, temperature), ``metrics.json`` (test-split scores of both stages, calibration,
split counts) and ``train_config.json`` (the recipe). A number the run did not measure is shown as
"not measured", never guessed. A model trained on phantoms says so at the top, twice.
"""

from __future__ import annotations

from dermfuse import skin_tone, vocab

PAPER = "https://arxiv.org/abs/2510.17773"
HAM10000_CITATION = ("Philipp Tschandl, Cliff Rosendahl, Harald Kittler. \"The HAM10000 dataset, a large collection of "
                     "multi-source dermatoscopic images of common pigmented skin lesions\", Scientific Data 5, 180161 "
                     "(2018), https://doi.org/10.1038/sdata.2018.161. Lesion masks: Tschandl et al., \"Human–computer "
                     "collaboration for skin cancer recognition\", Nature Medicine 26, 1229–1234 (2020).")  # fmt: skip
ISIC2018_CITATION = ("Noel Codella et al. \"Skin Lesion Analysis Toward Melanoma Detection 2018: A Challenge Hosted by the "
                     "International Skin Imaging Collaboration (ISIC)\", arXiv:1902.03368 (2019).")  # fmt: skip
PH2_CITATION = ("Teresa Mendonça, Pedro M. Ferreira, Jorge Marques, André R. S. Marçal, Jorge Rozeira. \"PH² – A dermoscopic "
                "image database for research and benchmarking\", 35th Annual International Conference of the IEEE EMBS, "
                "Osaka, 2013.")  # fmt: skip


def model_card(model_config: dict, metrics: dict, train_config: dict, repo_id: str | None = None,
               reproduce: dict | None = None) -> str:  # fmt: skip
    """The Markdown model card (with Hub YAML front matter) for one trained model.

    ``reproduce``: optional {"command": ..., "wall_time": ..., "machine": ..., "history": ...} for a "Reproduce"
    section (``history``: how the weights were made where it differs from a from-scratch run).
    """
    name = model_config.get("name", "dermfuse")
    phantom = str(model_config.get("dataset", "")).startswith("phantom")
    ham10000 = str(model_config.get("dataset", "")).lower().startswith("ham10000")  # CC BY-NC 4.0 data
    classes = model_config["classes"]
    sections = [
        _front_matter(phantom, "cc-by-nc-4.0" if ham10000 else "apache-2.0"),
        f"# {name}\n",
        _warnings(phantom),
        _summary(model_config),
        _labels(classes),
        _preprocessing(model_config),
        _training(model_config, metrics, train_config),
        _results(metrics, classes),
        _pipeline_results(metrics.get("pipeline_test")),
        _real_results(metrics),
        *[text for text in (_compute_paths(metrics.get("compute_paths")),) if text],
        _cross_validation(metrics.get("cross_validation")),
        _calibration(metrics, model_config),
        *[text for text in (_image_limits(model_config),) if text],
        *[text for text in (_operating_points(model_config, metrics), _skin_tone(model_config)) if text],
        _usage(repo_id or name),
        _intended_use(phantom),
        _limitations(phantom, str(model_config.get("dataset", "")).startswith("PH2"), ham10000,
                     metrics.get("isic2018_task1_test_classification")),
    ]
    if reproduce:
        sections.append(_reproduce(reproduce))
    if str(model_config.get("dataset", "")).startswith("PH2"):
        sections.append(f"## Data citation\n\nTrained on images of the PH² database (research use):\n\n> {PH2_CITATION}\n")
    if ham10000:
        sections.append("## Data citation and licence\n\nTrained on HAM10000 (classifier and segmenter) and ISIC 2018 "
                        "Task 1 (segmenter), both released under **CC BY-NC 4.0**: these weights are derived from them, "
                        f"so use them non-commercially and cite:\n\n> {HAM10000_CITATION}\n\n> {ISIC2018_CITATION}\n")
    sections.append(f"## Citation\n\nArchitecture after Atiq & Fattah, *Towards Explainable Skin Cancer Classification: "
                    f"A Dual-Network Attention Model with Lesion Segmentation and Clinical Metadata Fusion*, "
                    f"arXiv:2510.17773 (2025), {PAPER}.\n")  # fmt: skip
    return "\n".join(sections)


def _front_matter(phantom: bool, licence: str = "apache-2.0") -> str:
    """Hub YAML; ``licence`` is the weights' (those learned from CC BY-NC data inherit its terms)."""
    tags = ["dermatology", "skin-lesion", "image-classification", "image-segmentation", "grad-cam", "dermfuse"]
    if phantom:
        tags += ["synthetic-data", "not-for-diagnosis"]
    lines = ["---", "library_name: dermfuse", f"license: {licence}", "pipeline_tag: image-classification", "tags:"]
    lines += [f"- {tag}" for tag in tags]
    lines += ["metrics:", "- balanced_accuracy", "- roc_auc", "- dice", "- jaccard", "---", ""]
    return "\n".join(lines)


def _warnings(phantom: bool) -> str:
    text = ("> **Not a medical device.** This model is research and teaching software. It gives no diagnosis "
            "and must not be used to make or change any clinical decision.\n")  # fmt: skip
    if phantom:
        text += ("\n> **Trained on synthetic phantom images, not on real patients.** Its training data were drawn by "
                 "`dermfuse.data.phantom` (procedural dermoscopy-like images). It is a demonstration of the "
                 "machinery: its numbers say nothing about real skin lesions, and it is **not for diagnosis**.\n")  # fmt: skip
    return text


def _summary(config: dict) -> str:
    streams = "two encoders (whole image and segmented lesion) fused by cross-attention" if config.get("use_lesion_stream", True) \
        else "one encoder on the whole image"  # fmt: skip
    learned = list(vocab.METADATA_FIELDS if config.get("trained_metadata") is None else config["trained_metadata"])
    fields = " and ".join(filter(None, [", ".join(learned[:-1]), *learned[-1:]]))  # "age, sex and site"
    metadata = f", plus a transformer over {fields}" if config.get("use_metadata", True) and learned else ""
    return (f"A [dermfuse]({PAPER}) skin-lesion model: a Deep-UNet segmenter (`{config['segmenter_encoder']}` encoder, "
            f"Dual Attention Gates, ASPP) finds the lesion; a classifier (`{config['classifier_encoder']}` ×"
            f"{2 if config.get('use_lesion_stream', True) else 1}) with {streams}{metadata} names it. "
            "Weights: `model.safetensors`; architecture and preprocessing: `config.json`.\n")  # fmt: skip


def _labels(classes: list[str]) -> str:
    rows = [f"| {i} | `{c}` | {vocab.DIAGNOSIS_NAMES.get(c, c)} | {'yes' if c in vocab.MALIGNANT else 'no'} |"
            for i, c in enumerate(classes)]  # fmt: skip
    return "## Labels\n\n| index | label | diagnosis | malignant or pre-malignant |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def _framing(config: dict) -> str:
    if config.get("image_framing", "whole") == "central_square":
        return ("Image stream: the central square of the frame (all of a square image), as HAM10000's prepared images\n"
                "  are (the central 450×450 of each 600×450 original), so a 4:3 upload is not squeezed into a shape the\n"
                "  model never learned from; its heatmap covers that square. The segmenter and the lesion stream see the\n"
                "  whole frame (`dermfuse.data.transforms.view_box`).")
    return "Image stream: the whole frame, resized to the classifier's input (a 4:3 frame is squeezed to the square)."


def _dark_frame(config: dict) -> str:
    if config.get("dark_frame", "kept") == "filled":
        return ("\n- A dermatoscope's dark round frame is filled in from the skin next to it before both classifier streams\n"
                "  see the image, and the image stream's view is taken from the lit field's box\n"
                "  (`dermfuse.data.field_of_view.lit_field`; chosen by `python -m experiments.dark_frame`).")
    return ""


def _preprocessing(config: dict) -> str:
    seg, img = config["segmentation_size"], config["image_size"]
    mean, std = ", ".join(f"{v:g}" for v in config["mean"]), ", ".join(f"{v:g}" for v in config["std"])
    return f"""## Preprocessing

- Images: RGB, EXIF orientation applied, resized (not letterboxed, antialiased) to {seg[0]}×{seg[1]} for the
  segmenter and {img[0]}×{img[1]} for the classifier, scaled to [0, 1] and normalised with mean ({mean}) and
  std ({std}). `dermfuse.data.to_tensor` does exactly this.
- {_framing(config)}{_dark_frame(config)}
- Lesion mask: segmenter probability upsampled to the image, threshold 0.5, largest connected component, holes
  filled (`dermfuse.lesion.clean_mask`); an empty mask falls back to the whole image.
- Lesion image: mode `{config['lesion_mode']}`, margin {config['lesion_margin']:g} of the box side, skin outside the
  slightly dilated mask blanked to the mean (`dermfuse.lesion.lesion_image_fn`).
- Metadata: age in years (missing allowed{_ages(config)}), sex in {list(config['sexes'])}, site in the unified vocabulary
  {list(config['sites'])}; anything unknown is `unknown`, which the model was trained to expect.{_flips(config)}
- Output: {_output(config)}
"""


def _ages(config: dict) -> str:
    ages = config.get("age_range")
    if ages is None:
        return ""
    return (f"; its training images' ages run from {ages[0]:g} to {ages[1]:g}, and an age outside is given to it as the "
            "nearer of the two, with a caution")


def _flips(config: dict) -> str:
    views = config.get("flip_views", 1)
    if views == 1:
        return ""
    which = {2: "as they are and flipped left to right",
             4: "as they are, flipped left to right, top to bottom, and both",
             8: "all eight orientations of the square: as they are, turned a quarter, a half and three quarters, and "
                "each of those mirrored"}[views]
    return (f"\n- Flip averaging: the classifier sees the image and the lesion image in {views} views ({which}); its\n"
            "  logits are the mean over the views (`dermfuse.models.flips`). The heatmaps are those of that mean\n"
            "  score, each view's map put back in the image's frame. The out-of-distribution and assessability checks\n"
            "  use the unflipped view.")


def _output(config: dict) -> str:
    temperature = config.get("temperature", 1.0)
    if config.get("prior_shift") is None:
        return f"`softmax(logits / T)` with the calibrated temperature T = {temperature:.4f} from `config.json`."
    return (f"`softmax((logits + s) / T)` with the calibrated prior shift s = {[round(v, 4) for v in config['prior_shift']]} "
            f"and temperature T = {temperature:.4f} from `config.json` (`DermFuse.calibrate`).")


def _training(config: dict, metrics: dict, train_config: dict) -> str:
    splits = metrics.get("splits", {})
    classes = config["classes"]
    header = "| split | " + " | ".join(f"`{c}`" for c in classes) + " | total |\n|---|" + "---|" * (len(classes) + 1)
    rows = []
    for split in ("train", "val", "test"):
        counts = splits.get(split, {})
        rows.append(f"| {split} | " + " | ".join(str(counts.get(c, 0)) for c in classes) + f" | {sum(counts.get(c, 0) for c in classes)} |")
    recipe = {key: train_config.get(key) for key in ("preset", "epochs", "batch_size", "lr", "weight_decay", "balance",
                                                       "label_smoothing", "augment", "precision", "seed")}  # fmt: skip
    recipe_text = ", ".join(f"{k} = {v}" for k, v in recipe.items() if v is not None)
    return f"""## Training data

- Data: {config.get('dataset', 'unknown')}.
- Split manifest: `splits.csv` (image id, label, metadata, lesion id, split; no file paths). Splits are grouped by
  lesion and stratified by label, so no lesion is in two splits. Images per split and class:

{header}
{chr(10).join(rows)}

- Recipe (stage 2, classifier): {recipe_text}. Best epoch {metrics.get('best_epoch')} by validation
  {metrics.get('monitor', 'balanced_accuracy').replace('_', ' ')}; training ended by `{metrics.get('stopped')}`.
  Stage 1 (segmenter) trained on the same split first; the classifier learned from lesion images made by
  the stage-1 masks, predicted once for every image.
"""


def _number(value, digits: int = 4) -> str:
    return "not measured" if value is None else f"{value:.{digits}f}"


def _results(metrics: dict, classes: list[str]) -> str:
    text = "## Results\n\n"
    stage1 = (metrics.get("segmenter") or {}).get("test")
    if stage1:
        text += (f"Segmenter, **test split** ({stage1.get('images')} images; masks post-processed, scored per image at the "
                 "segmenter's input size, then averaged):\n\n| Dice | IoU | thresholded Jaccard (ISIC) | sensitivity | specificity |\n"
                 "|---|---|---|---|---|\n"
                 f"| {_number(stage1.get('dice'))} | {_number(stage1.get('iou'))} | {_number(stage1.get('thresholded_jaccard'))} | "
                 f"{_number(stage1.get('sensitivity'))} | {_number(stage1.get('specificity'))} |\n\n")  # fmt: skip
    else:
        text += "Segmenter test scores: not measured in this run.\n\n"
    test = metrics.get("test")
    if not test:
        return text + "Classifier test scores: not measured (the run had no test split).\n"
    text += (f"Classifier, **test split** ({test['cases']} images, calibrated probabilities; computed at the end of training "
             "with the fp32 networks on the cached stage-1 masks, where the pipeline below runs the app's fast path"
             + ("; with the weights before their rounding to fp16" if (metrics.get("storage") or {}).get("rounding") else "")
             + "):\n\n"
             "| accuracy | balanced accuracy | macro AUC (one-vs-rest) | ECE |\n|---|---|---|---|\n"
             f"| {_number(test['accuracy'])} | {_number(test['balanced_accuracy'])} | {_number(test['macro_auc'])} | "
             f"{_number(test['ece'])} |\n\n"
             "| class | precision | recall | F1 | AUC | support |\n|---|---|---|---|---|---|\n")  # fmt: skip
    for name in classes:
        row = test["per_class"][name]
        text += (f"| `{name}` | {_number(row['precision'])} | {_number(row['recall'])} | {_number(row['f1'])} | "
                 f"{_number(row['auc'])} | {row['support']} |\n")  # fmt: skip
    return text + "\nFigures: `confusion_matrix.png`, `roc_curves.png`, `learning_curves.png` (test and validation splits as named in each).\n"


def _pipeline_results(evaluation: dict | None) -> str:
    """The test split through the whole pipeline, as ``dermfuse evaluate`` scores it (if the run did)."""
    if not evaluation:
        return ""
    seg, cls = evaluation.get("segmentation") or {}, evaluation.get("classification") or {}
    flagged = evaluation.get("ood_flagged_share")
    return f"""### Through the pipeline

The same test split through `DermFusePipeline`, the path an app user's image takes (masks scored at each
image's own resolution, lesion images cut from the predicted masks, calibrated scores):

| images | Dice | IoU | thresholded Jaccard | balanced accuracy | macro AUC | ECE before → after calibration | flagged out-of-distribution |
|---|---|---|---|---|---|---|---|
| {evaluation['images']} | {_number(seg.get('dice'))} | {_number(seg.get('iou'))} | {_number(seg.get('thresholded_jaccard'))} | {_number(cls.get('balanced_accuracy'))} | {_number(cls.get('macro_auc'))} | {_number(evaluation.get('classification_uncalibrated_ece'))} → {_number(cls.get('ece'))} | {"not measured" if flagged is None else f"{100 * flagged:.1f} %"} |

Reproduce these numbers:

```bash
{evaluation.get('command', 'dermfuse evaluate DATA --model MODEL --manifest splits.csv --split test')}
```
"""


def _real_results(metrics: dict) -> str:
    """What ``python -m train ham10000`` measures beside the test split: metadata off, melanoma at a fixed
    specificity, segmentation per source and on PH2 (never trained on), the classifier on other clinics' images
    (ISIC 2018 Task 1's test split), fp16 storage."""
    evaluation = metrics.get("pipeline_test") or {}
    by_source = metrics.get("segmentation_by_source")
    if not by_source:
        return ""
    cls, without = evaluation.get("classification") or {}, evaluation.get("classification_without_metadata") or {}
    melanoma = (cls.get("per_class") or {}).get("mel") or {}
    names = {"ham10000_test": "HAM10000 test split", "isic2018_task1_test": "ISIC 2018 Task 1 test split",
             "ph2_all_cross_dataset": "PH2, all 140 images (another clinic; never trained on)"}
    rows = "\n".join(f"| {names.get(source, source)} | {seg['images']} | {_number(seg['dice'])} | {_number(seg['iou'])} | "
                     f"{_number(seg['thresholded_jaccard'])} |" for source, seg in by_source.items() if seg)
    text = f"""### Without metadata, melanoma, and segmentation by source

Most users, and the ISIC test sets, give no age, sex or site. The same test images with every field unknown:
balanced accuracy {_number(without.get('balanced_accuracy'))}, macro AUC {_number(without.get('macro_auc'))}
(with metadata: {_number(cls.get('balanced_accuracy'))}, {_number(cls.get('macro_auc'))}).
Melanoma one-vs-rest: AUC {_number(melanoma.get('auc'))}, sensitivity at 80 % specificity
{_number(melanoma.get('sensitivity_at_80_specificity'))}.

Segmenter through the pipeline (each image at its own resolution; per-image scores averaged; thresholded
Jaccard sets images under 0.65 to 0, as ISIC scores):

| images | count | Dice | IoU | thresholded Jaccard |
|---|---|---|---|---|
{rows}
"""
    ph2 = metrics.get("ph2_melanoma_vs_nevus")
    if ph2:
        text += (f"\nOn PH2 (melanoma vs nevus, {ph2['images']} images from another clinic): melanoma-score AUC "
                 f"{_number(ph2['auc'])}, sensitivity at 80 % specificity {_number(ph2['sensitivity_at_80_specificity'])}"
                 + (f" ({ph2['note']})" if ph2.get("note") else "") + ".\n")
    other = metrics.get("isic2018_task1_test_classification")
    if other:
        text += "\n" + _other_clinics(other, melanoma)
    storage = metrics.get("storage")
    if storage:
        text += "\n" + _storage(storage)
    return text


def _other_clinics(other: dict, melanoma: dict) -> str:
    """The classifier on the ISIC 2018 Task 1 test split (other clinics, ISIC 2019 diagnoses), against its own test split."""
    pair = other["melanoma_vs_nevus"]
    diagnoses = ", ".join(f"{n} {label}" for label, n in other["diagnoses"].items())
    text = (f"On images from other clinics (the ISIC 2018 Task 1 test split, {other['images']} images with an ISIC 2019 "
            f"diagnosis: {diagnoses}; the classifier never learned from ISIC images), with their age, sex and site: "
            f"accuracy {_number(other['accuracy'])}, balanced accuracy over those labels {_number(other['balanced_accuracy'])} "
            f"({_number(other['balanced_accuracy_without_metadata'])} without metadata), ECE {_number(other['ece'])}; "
            f"melanoma against nevus ({pair['images']} images, {pair['melanomas']} melanomas) AUC {_number(pair['auc'])}, "
            f"sensitivity at 80 % specificity {_number(pair['sensitivity_at_80_specificity'])} (melanoma against the rest on "
            f"the HAM10000 test split: AUC {_number(melanoma.get('auc'))}).")
    flagged = other.get("ood_flagged")
    if flagged and flagged["accuracy_flagged"] is None:
        text += " The out-of-distribution warning flagged none of them."
    elif flagged:
        worse = (flagged["accuracy_flagged"] or 0.0) < (flagged["accuracy_not_flagged"] or 0.0)
        text += (f" The out-of-distribution warning flagged {flagged['images']} of them; the top class was right on "
                 f"{_percent(flagged['accuracy_flagged'])} of those and on {_percent(flagged['accuracy_not_flagged'])} of the "
                 "others" + (": the flagged ones were judged worse." if worse else
                             ", so the warning did not pick out the images of other clinics that the model judged worse."))
    return text + "\n"


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.0f} %"


def _storage(storage: dict) -> str:
    """How the weights are stored, and where they were rounded to fp16, how far that moved the scores."""
    if storage["dtype"] != "float16":
        return "Weights are stored in float32.\n"
    text = "Weights are stored in float16 and loaded as fp32."
    rounding = storage.get("rounding")
    if rounding:
        moved = "; ".join(f"{name} path: largest change {_number(numbers['max_change'], 3)}, {numbers['moved_over_0.01']} of "
                          f"{numbers['images']} images over 0.01, the same top class on {numbers['same_top_class']:.1%}"
                          for name, numbers in rounding["paths"].items())
        text += (" They are the trained weights rounded to fp16 after calibration, and every number on this card is the "
                 "rounded model's, so the stored file gives them exactly. Against the unrounded weights the rounding "
                 f"moved calibrated probabilities on the first {rounding['images']} test images (with their patient data) "
                 f"as follows: {moved}. This model's scores react to changes that small (saving an image once more as "
                 "JPEG moves them further), which is why the rounded model was measured again rather than taken to be "
                 "the same.")
    return text + "\n"


def _compute_paths(paths: dict | None) -> str:
    """Both compute paths' numbers on the test split, how often they agree, and fp16 storage on each
    (``python -m train compute-paths``)."""
    if not paths:
        return ""
    cpu = paths["cpu"]
    names = {"fast": "fast (bf16 networks, where the hardware has bf16)", "fp32": "fp32 (everywhere else)"}

    def storage(numbers: dict | None) -> str:
        return (f"{_number(numbers['max_change'], 3)} ({numbers['moved_over_0.01']} of {numbers['images']} images over 0.01)"
                if numbers else "not measured")

    measured = bool(paths.get("half_storage"))  # not where the weights are fp16 values already
    rows = []
    for name, numbers in paths["paths"].items():
        cls, without = numbers["classification"], numbers["classification_without_metadata"]
        rows.append(f"| {names.get(name, name)} | {_number(cls['balanced_accuracy'])} | "
                    f"{_number(without['balanced_accuracy'])} | {_number(cls['macro_auc'])} | "
                    f"{_number(cls['ece'])} | {_number(numbers['segmentation']['dice'])} |"
                    + (f" {storage(paths['half_storage'].get(name))} | {storage(paths.get('mixed_storage', {}).get(name))} |"
                       if measured else ""))
    text = f"""### Numbers by compute path

The pipeline runs its networks in bf16 where the CPU or GPU supports it (the fast path), in fp32 elsewhere. The
same {paths['images']} test images through each (`{paths['command']}`; CPU {cpu['machine']}, {cpu['threads']} threads,
bf16 {'yes' if cpu['bf16'] else 'no'}, AMX {'yes' if cpu['amx'] else 'no'}). bf16 kernels differ between CPUs, so the fast
path's numbers can differ a little from the tables above.

| path | balanced accuracy | without metadata | macro AUC | ECE | Dice |""" + (
        " fp16 storage: largest probability change | mixed storage: the same |\n|---|---|---|---|---|---|---|---|\n"
        if measured else "\n|---|---|---|---|---|---|\n") + "\n".join(rows) + "\n"
    sizes = paths.get("storage_mib")
    if sizes and "mixed" in sizes:
        text += (f"\nfp16 storage would take the weights from {sizes['fp32']:.1f} to {sizes['fp16']:.1f} MiB, mixed storage (fp16 but "
                 f"for the tensors under {paths['kept_below']:,} values: biases, norms, embeddings, small kernels) to "
                 f"{sizes['mixed']:.1f} MiB. Weights ship in fp16 only where no probability moves by more than 0.01.")
        moved = [f"{numbers['over_0.01_with_lesion_box_moved']} of {numbers['moved_over_0.01']} on the {name} path"
                 for name, numbers in paths.get("mixed_storage", {}).items() if numbers["moved_over_0.01"]]
        if moved:
            text += (" Of the images mixed storage moves by more than 0.01, " + " and ".join(moved) + " had their lesion "
                     "box moved by a mask pixel flipped at the lesion's edge; the others moved through the rounded "
                     "weights alone.")
        text += "\n"
    both = paths.get("fast_vs_fp32")
    if both:
        text += (f"\nThe two paths give the same top class on {both['same_top_class']:.1%} of the images; an image's largest "
                 f"probability change between them has median {_number(both['median_change'], 3)}, is over 0.05 on "
                 f"{both['moved_over_0.05']} images and at most {_number(both['max_change'], 3)}. Both the masks (a few flipped "
                 "pixels move the lesion crop) and the bf16 encoders contribute; a score near a class boundary can "
                 "change class between CPUs.\n")
    return text


def _cross_validation(cv: dict | None) -> str:
    """Cross-validated numbers on real images (``python -m train real``)."""
    if not cv:
        return ""
    seg, cls, gate = cv["segmentation"], cv["classification"], cv["ood"]
    rows = "\n".join(
        f"| {recipe}{' (this model)' if recipe == cv['segmenter_recipe'] else ''} | {_number(r['dice'])} ± {_number(r['dice_fold_std'])} | "
        f"{_number(r['iou'])} | {_number(r['thresholded_jaccard'])} | {_number(r['worst_decile_dice'])} |"
        for recipe, r in seg.items()
    )
    labels = ", ".join(f"{n} {label}" for label, n in cv["labels"].items())
    return f"""### Cross-validated on real images

{cv['folds']}-fold cross-validation on the {cv['images']} real images ({labels}), stratified by label, every fold's
model trained only on the other folds, scored through `DermFusePipeline` at each image's resolution. The
phantom-only row is the phantom demo model's segmenter on the same folds (the phantom-to-real gap).

| segmenter | Dice (mean ± std over folds) | IoU | thresholded Jaccard | worst-decile Dice |
|---|---|---|---|---|
{rows}

| melanoma vs nevus (out-of-fold, {cls['cases']} images, {cls['melanomas']} melanomas) | value |
|---|---|
| AUC, pooled | {_number(cls['auc'])} |
| AUC, mean ± std over folds | {_number(cls['auc_fold_mean'])} ± {_number(cls['auc_fold_std'])} |
| balanced accuracy (most probable class) | {_number(cls['balanced_accuracy'])} |
| sensitivity at {100 * 0.8:.0f} % specificity | {_number(cls['sensitivity_at_80_specificity'])} |
| ECE before → after temperature scaling (cross-fitted, {cls['ece_bins']} bins) | {_number(cls['ece_before'])} → {_number(cls['ece_after'])} |
| real images flagged by the out-of-distribution gate | {100 * gate['real_flagged']:.1f} % |
| gate AUROC, real vs. {gate['negatives_per_fold']} generated non-dermoscopy images per fold (min over folds) | {_number(gate['non_dermoscopy_auroc_min'])} |

Per-image and per-fold results: `segmentation_cv.csv`, `classification_cv.csv`, `cv.json` in the run folder;
the best and the worst out-of-fold masks beside the expert's: `real_cases.png`.
"""


def _calibration(metrics: dict, config: dict) -> str:
    calibration = metrics.get("calibration")
    if not calibration:
        return "## Calibration\n\nNot calibrated (temperature 1).\n"
    shift = calibration.get("prior_shift")
    prior = "" if not shift else f"""The classifier was trained class-balanced, so it scores every class as if all were equally common. First
a share α = {shift['alpha']:.2f} of the training split's log class frequencies is added back to the logits: of the
shares 0, 0.05, …, 1, the one with the lowest validation ECE among those costing at most {shift['tolerance']}
validation balanced accuracy (`dermfuse.metrics.fit_prior_shift`; logit adjustment, Menon et al. 2021). Then
"""
    return f"""## Calibration

{prior}{"one" if shift else "One"} temperature T = {calibration['temperature']:.4f}, fitted on {_fitted_on(calibration.get('fitted_on', 'val'))} by minimising the
negative log-likelihood, is stored in `config.json` and applied by the model's users. Expected calibration
error (top-label, {calibration['bins']} equal-width bins):

| split | ECE before | ECE after |
|---|---|---|
| validation | {_number(calibration.get('val_ece_before'))} | {_number(calibration.get('val_ece_after'))} |
| test | {_number(calibration.get('test_ece_before'))} | {_number(calibration.get('test_ece_after'))} |

Reliability diagram before and after: `reliability.png` (test split).
{_ood(calibration.get('ood'))}"""


def _fitted_on(where: str) -> str:
    return "the validation split" if where == "val" else where


def _ood(ood: dict | None) -> str:
    if not ood:
        return "\nNo out-of-distribution gate was fitted for this model.\n"
    flagged = ood.get("test_flagged")
    share = "not measured" if flagged is None else f"{100 * flagged:.1f} %"
    return (f"\n### Out-of-distribution gate\n\nFitted on {ood['images']} training images: an image whose score (encoder "
            f"features and capture statistics against the training images, `dermfuse.ood`) exceeds the "
            f"{100 * ood['quantile']:g} % quantile of the training scores, {ood['threshold']:.3f}, gets a warning; the "
            f"scores are never changed. Test images flagged: {share}.\n")  # fmt: skip


def _image_limits(config: dict) -> str:
    """The least image side, sharpness and lesion contrast under which an image is not judged
    (``python -m experiments.resolution``, ``.focus``, ``.bare_skin``)."""
    side, sharp, contrast = config.get("min_image_side"), config.get("min_sharpness"), config.get("min_lesion_contrast")
    if not side and not sharp and not contrast:
        return ""
    text = ("### Images too small, too soft or without a lesion to judge\n\nSuch an image is not assessable: no "
            "diagnosis, and the reason in words.")
    if side:
        text += (f" Too small: a shorter side under {side} px; under that side, on smaller copies of its validation images, it "
                 "did worse than at full size by more than the measurement's tolerance (AUC 0.01, balanced accuracy 0.03, "
                 "Dice 0.01; `python -m experiments.resolution`).")
    if sharp:
        text += (f" Out of focus: a sharpness (log variance of the Laplacian of the 128-px grey thumbnail) under {sharp:.2f}, "
                 "a low quantile of its training images'; blurred copies of its validation images were judged much "
                 "worse and more confidently (`python -m experiments.focus`).")
    if contrast:
        text += (f" No lesion stands out: the lesion the segmenter found differs from the skin around it by less than "
                 f"ΔE\\*ab {contrast:.1f}, a low quantile of its training images'; on squares of bare skin cut from real "
                 "images the segmenter still outlines a patch and the classifier scores it (`python -m "
                 "experiments.bare_skin`).")
    return text + " The numbers are in `docs/RESULTS.md` of the dermfuse repository.\n"


def _operating_points(config: dict, metrics: dict) -> str:
    """The melanoma thresholds stored in ``config.json`` with their validation rates, and the test rates
    ``python -m train operating-points`` measured (clearly the test split's)."""
    fitted = config.get("operating_points")
    if not fitted:
        return ""
    test = (metrics.get("operating_points") or {}).get("test")
    rows = []
    for i, point in enumerate(fitted["points"]):
        rule = f"{100 * point['value']:g} % melanoma {point['target']}"
        row = f"| {rule} | {point['threshold']:.4f} | {point['sensitivity']:.3f} | {point['specificity']:.3f} |"
        if test:
            with_meta, without = test["with_metadata"][i], test["without_metadata"][i]
            row += (f" {with_meta['sensitivity']:.3f} | {with_meta['specificity']:.3f} | {without['sensitivity']:.3f} | "
                    f"{without['specificity']:.3f} |")
        rows.append(row)
    header = "| rule | threshold | validation sensitivity | validation specificity |"
    rule_line = "|---|---|---|---|"
    if test:
        header += " **test** sensitivity | **test** specificity | test, patient data unknown: sensitivity | specificity |"
        rule_line += "---|---|---|---|"
    where = (f"; measured on the **test split** ({test['images']} images, {test['positives']} melanomas) with each "
             "image's patient data and with none" if test else "; not measured on the test split")
    return f"""## Melanoma operating points

Thresholds on the calibrated melanoma score, each chosen on the **validation split** ({fitted['images']} images,
{fitted['positives']} melanomas) to meet its rule (`dermfuse.operating_points`, `python -m train operating-points`),
stored in `config.json` (`operating_points`){where}. A lesion is flagged when its score is at or above
the threshold; the app and the case sheet say where each case falls.

{header}
{rule_line}
{chr(10).join(rows)}
"""


def _skin_tone(config: dict) -> str:
    """The skin-tone bands of the training images stored in ``config.json`` (the app's caution)."""
    tones = config.get("skin_tone")
    if not tones:
        return ""
    rows = "\n".join(f"| {band} | {count} | {100 * count / tones['measured']:.1f} % |" for band, count in tones["counts"].items())
    return f"""## Skin tone of the training images

{skin_tone.DEFINITION} Sources: {skin_tone.SOURCE}. Measured on the {tones['how']}: {tones['measured']} of
{tones['images']} images measurable, {tones['colour_cast']} of them with a colour cast (median b* ≤ 0, ITA taken at its
±90° limit). {skin_tone.CAVEAT} The app cautions when an image's band holds under {100 * tones['rare_share']:g} % of the
measurable training images (`python -m train skin-tone`, which also measures the model per band).

| band | training images | share of the measurable |
|---|---|---|
{rows}
"""


def _usage(source: str) -> str:
    return f"""## Use

```python
from dermfuse import DermFuse

model = DermFuse.from_pretrained("{source}")   # a Hub repo id or a local folder
```

The dermfuse app and `dermfuse` command line run the whole pipeline (segmentation, lesion image,
classification with the calibrated temperature, Grad-CAM) on any dermoscopy image.
"""


def _intended_use(phantom: bool) -> str:
    if phantom:
        return ("## Intended use\n\nDemonstrating and testing the dermfuse pipeline and app (segmentation, lesion image, "
                "dual-stream classification, calibration, Grad-CAM) without patient data. Not for real images, not for "
                "diagnosis, not for research conclusions about skin lesions.\n")  # fmt: skip
    return ("## Intended use\n\nResearch and teaching on dermoscopy images: studying lesion segmentation, dual-stream "
            "classification, calibration and explanations. Not for diagnosis, triage or any clinical decision.\n")  # fmt: skip


def _limitations(phantom: bool, ph2: bool = False, ham10000: bool = False, other_clinics: dict | None = None) -> str:
    items = [
        "Dermoscopy only: clinical (non-dermoscopic) photographs are outside what the model saw.",
        "Closed label set: a lesion of any other kind is forced into one of the labels above.",
        "The numbers hold for images like the test split; other cameras, clinics, populations and skin tones "
        "(public dermoscopy datasets are mostly of fair skin) can be worse, and calibration can drift with them.",
        "Grad-CAM maps and the lesion-focus score show where the network looked, not why a lesion is what it is.",
    ]
    if phantom:
        items.insert(0, "Trained and tested on synthetic phantoms only: no number here transfers to real lesions.")
    if ham10000:
        items.insert(0, "Trained on HAM10000 (two centres, Vienna and Queensland; mostly fair skin) at reduced resolution "
                        "(256 px copies): seven labels only, and the test split comes from the same two centres, so the "
                        "numbers above are an upper bound for images from other clinics and devices"
                        + (f" (on ISIC 2018 Task 1 images from other clinics, melanoma against nevus AUC "
                           f"{_number(other_clinics['melanoma_vs_nevus']['auc'], 2)}: see Results)." if other_clinics else "."))  # fmt: skip
    if ham10000:
        items.insert(1, "Colour balance and compression move the scores: the model reads colour balance as evidence. Under "
                        "a colour cast of 15 % (a dermatoscope or camera white-balanced differently) the shipped model's top "
                        "class changed on about one validation image in five, and its median top probability mostly rose; "
                        "no check per image can tell such a cast from a lesion's own colours. Upload images as the "
                        "dermatoscope recorded them, without filters. A JPEG compressed as hard as copies whose top class "
                        "changed on more than one in ten is diagnosed with a caution (`python -m experiments.capture`; the "
                        "numbers are in docs/RESULTS.md of the dermfuse repository).")  # fmt: skip
    if ham10000:
        items.insert(2, "A ruler or an ink marking in the image moves the scores: pasted onto validation images (real "
                        "templates, placed as their authors describe), a ruler changed the top class on 9.0 % of them and an ink "
                        "marking on 7.1 %, and lowered balanced accuracy from 0.692 to 0.663 and 0.677; the heatmaps did "
                        "not point at them (`python -m experiments.artefacts`; docs/RESULTS.md of the dermfuse "
                        "repository).")  # fmt: skip
    if ham10000:
        items.insert(3, "A dermatoscope's dark round frame moves the scores: drawn onto validation images, it changed the top "
                        "class on 21.6 % (a field inscribed in the square image) and 30.3 % (a smaller field in a 4:3 frame) "
                        "of them, and lowered balanced accuracy from 0.692 to 0.521 and 0.431. The app flagged every one "
                        "of them (not assessable, or unlike the training images); filling the frame in was tried and not "
                        "kept "
                        "(`python -m experiments.dark_frame`; docs/RESULTS.md of the dermfuse repository).")  # fmt: skip
    if ph2:
        items.insert(0, "Trained on 140 PH2 images from one clinic and one dermatoscope (28 melanomas): the cross-validated "
                        "numbers carry wide uncertainty, and two labels only (melanoma, nevus) — any other lesion is forced "
                        "into one of them. Research use only, as the PH2 licence requires.")  # fmt: skip
    return "## Limitations\n\n" + "\n".join(f"- {item}" for item in items) + "\n"


def _reproduce(reproduce: dict) -> str:
    lines = ["## Reproduce", "", "```bash", reproduce["command"], "```", ""]
    if reproduce.get("wall_time"):
        lines.append(f"Wall time: {reproduce['wall_time']}" + (f" on {reproduce['machine']}." if reproduce.get("machine") else "."))
    if reproduce.get("history"):
        lines += ["", f"How these weights differ from a from-scratch run of the command: {reproduce['history']}"]
    return "\n".join(lines) + "\n"
