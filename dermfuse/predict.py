"""Batch prediction: one image, a folder, or a CSV of images with metadata → CSV / JSON / overlays.

An overlay is a figure per image (``render.overlay_sheet``): the outlined lesion and each stream's heatmap
under its plain title, with its colour bar, method and lesion focus, the top scores, and under them the
warnings and the model with what it learned from (the picture may be shared alone).

Also writes the official ISIC challenge formats: a classification CSV (``image`` plus one
probability column per class, upper-case as in the ground truth) and one-channel 0/255
``{image}_segmentation.png`` masks at the input's size.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from .data.io import ImageLoadError, read_header
from .data.metadata import normalize_metadata
from .data.readers import METADATA_COLUMNS, find_columns
from .data.table import FileIndex
from .diagnosis import Diagnosis
from .pipeline import Case, DermFusePipeline
from .render import overlay_sheet
from .vocab import CSV_COLUMN

OVERLAY_DPI = 100  # the overlay figure is 11 inches wide: 1100 pixels
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def cases_from(source: str | Path, age=None, sex=None, site=None) -> list[Case]:
    """An image file, a folder of images, or a CSV (columns ``image`` [, ``age``, ``sex``, ``site``]).

    In a CSV, ``image`` (or HAM10000's ``image_id``) is a path relative to the CSV's folder (its suffix may be left
    out), or an id found there or in a folder in it (``images/``; HAM10000's ``HAM10000_images_part_1/2``) as
    ``{id}.jpg``, ``.png``, …. The patient columns may have the names HAM10000 and ISIC give them (``age_approx``,
    ``gender``, ``localization``, ``anatom_site_general``: ``data.readers.METADATA_COLUMNS``).
    Every image's header and every row's patient data are checked here, before any network runs: a folder or a
    CSV with an unreadable file or an impossible value is refused in seconds, with each one named, rather than
    failing at its batch after the images before it were diagnosed (and their results lost). A file whose header
    reads but whose pixels do not (truncated) is found only when decoded: ``predict_all(undecodable=...)``.
    """
    source = Path(source)
    if not source.exists():
        raise ValueError(f"{source} does not exist: give an image file, a folder of images, or a CSV")
    if source.suffix.lower() != ".csv":
        normalize_metadata(age, sex, site)  # the same values for every image: one check, one message
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        cases = [Case(p, age, sex, site, image_id=p.stem) for p in files]
        problems, inputs = [problem for problem in map(_problem, cases) if problem], len(cases)
    elif source.suffix.lower() == ".csv":
        table = pd.read_csv(source, dtype=str)  # a blank or NA cell is NaN: unknown
        columns = find_columns(table.columns, {"image": ("image", "image_id"), **METADATA_COLUMNS})
        if columns["image"] is None:
            raise ValueError(f"{source} has no 'image' (or 'image_id') column (columns: {', '.join(table.columns)})")
        cases, problems, inputs, index = [], [], len(table), _image_index(source.parent)
        for line, row in enumerate(table.to_dict("records"), start=2):
            name = str(row[columns["image"]])
            path = _resolve(source.parent, name, index)
            if path is None:
                problems.append(f"line {line} ({name}): no such image in the CSV's folder or a folder in it (such as "
                                f"images/), as a path or as {name}.jpg / .png / …")
                continue
            case = Case(path, *(row[columns[f]] if columns[f] else None for f in METADATA_COLUMNS), image_id=Path(name).stem)
            problems += [f"line {line} ({name}): {problem}" for problem in [_problem(case)] if problem]
            cases.append(case)
    else:
        cases = [Case(source, age, sex, site, image_id=source.stem)]
        problems, inputs = [problem for problem in map(_problem, cases) if problem], 1
    _refuse(source, problems, inputs)
    return cases


def _problem(case: Case) -> str | None:
    """Why ``case`` cannot be diagnosed, from its image's header and its patient data; ``None`` when it can."""
    try:
        read_header(case.image)
        normalize_metadata(case.age, case.sex, case.site)
    except ValueError as error:
        return str(error)
    return None


def _refuse(source: Path, problems: list[str], inputs: int, shown: int = 10) -> None:
    if not problems:
        return
    if inputs == 1:  # the problem as it is, named by its CSV where it comes from a row
        raise ValueError(f"{source}, {problems[0]}" if source.suffix.lower() == ".csv" else problems[0])
    listed = problems[:shown] + ([f"... and {len(problems) - shown} more"] if len(problems) > shown else [])
    raise ValueError(f"{len(problems)} of the {inputs} images in {source} cannot be diagnosed, so none was: fix or "
                     "remove these and run again\n  " + "\n  ".join(listed))


def _image_index(folder: Path) -> FileIndex:
    """The images in a CSV's folder and in the folders in it (``images/``, as ``data.readers.read_image_folder``
    reads; HAM10000's ``HAM10000_images_part_1/2``; ISIC's ``ISIC_2019_Training_Input/``), by name stem. Where two
    hold one name, the CSV's own folder wins, then ``images/``, then the others by name."""
    inside = sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: (d.name != "images", d.name))
    return FileIndex([folder, *inside], tuple(IMAGE_SUFFIXES))


def _resolve(folder: Path, name: str, index: FileIndex) -> Path | None:
    """The image a CSV row names: a path from the CSV's folder (with or without its suffix), or an id (with or without
    its suffix) in ``index``."""
    for candidate in (folder / name, *(folder / f"{name}{suffix}" for suffix in (".jpg", ".jpeg", ".png"))):
        if candidate.is_file():
            return candidate
    found = index.find(Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name)
    return None if found is None else Path(found)


def predict_all(pipeline: DermFusePipeline, cases: list[Case], batch_size: int = 8, explain: bool = False,
                progress: bool = True, describe: bool = True, undecodable: list | None = None) -> list[Diagnosis]:
    """Run the pipeline over ``cases`` in batches, with a progress bar (``describe``: see ``DermFusePipeline.predict``).

    An image whose header reads but whose pixels do not (a truncated download) fails its batch when it is decoded.
    By default that error is raised, as a study needs. With a list as ``undecodable``, that batch is diagnosed again
    image by image, each image that still cannot be decoded is added to the list as (image id, the error) and left
    out, and every other image is diagnosed: one bad file in a folder of a thousand costs one result, not all."""
    results = []
    for start in tqdm(range(0, len(cases), batch_size), desc="diagnosing", unit="batch", disable=not progress):
        batch = cases[start:start + batch_size]
        try:
            diagnosed = list(zip(batch, pipeline.predict(batch, explain=explain, describe=describe)))
        except ImageLoadError:
            if undecodable is None:
                raise
            diagnosed = []
            for case in batch:
                try:
                    diagnosed += zip([case], pipeline.predict([case], explain=explain, describe=describe))
                except ImageLoadError as error:
                    undecodable.append((case.image_id, str(error)))
        for case, result in diagnosed:
            result.image_id = case.image_id
            results.append(result)
    return results


def results_table(results: list[Diagnosis], scores_if_not_assessable: bool = False) -> pd.DataFrame:
    """One row per image; the scores of an image that is not assessable are blank unless asked for. The last
    columns name the model, its revision and what it learned from, so the file says where its scores came from."""
    rows = []
    for r in results:
        row = {"image": r.image_id, "assessable": r.assessable, "reasons": " | ".join(r.reasons)}
        if r.assessable or scores_if_not_assessable:
            row.update({"top_class": r.top_class, "top_probability": r.top_probability})
            row.update({f"p_{c}": p for c, p in r.scores().items()})
            row.update({f"p_{c}_without_metadata": p for c, p in r.scores(with_metadata=False).items()})
        for stream, value in (r.lesion_focus or {}).items():
            row[f"lesion_focus_{stream}"] = value
        for stream, method in (r.heatmap_methods or {}).items():
            row[f"heatmap_method_{stream}"] = method
        row.update({"lesion_found": r.lesion_found, "ood_score": r.ood_score, "warnings": " | ".join(r.warnings),
                    "model": r.model["name"], "model_revision": r.model["revision"], "trained_on": r.model["dataset"]})
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(results: list[Diagnosis], out_dir: Path, overlays: bool = False, isic_submission: bool = False,
                  scores_if_not_assessable: bool = False) -> list[Path]:
    """Write predictions.csv and predictions.json (and overlays / ISIC files if asked); returns the paths.

    An image that is not assessable gets its reasons and no scores, unless ``scores_if_not_assessable``.
    The ISIC submission holds every image's scores: the challenge's format has no place for abstaining.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "predictions.csv", out_dir / "predictions.json"]
    results_table(results, scores_if_not_assessable).to_csv(written[0], index=False)
    written[1].write_text(json.dumps([r.to_dict(scores_if_not_assessable=scores_if_not_assessable) for r in results], indent=1))
    if overlays:
        for r in results:  # the image as the pipeline decoded it: not read again
            path = out_dir / "overlays" / f"{r.image_id}.png"
            path.parent.mkdir(exist_ok=True)
            overlay_sheet(r).savefig(path, dpi=OVERLAY_DPI)
            written.append(path)
    if isic_submission:
        written += write_isic_submission(results, out_dir / "isic_submission")
    return written


def write_isic_submission(results: list[Diagnosis], out_dir: Path) -> list[Path]:
    """ISIC formats: classification CSV (image + one probability column per class) and 0/255 masks."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame([{"image": r.image_id, **{CSV_COLUMN[c]: p for c, p in r.scores().items()}} for r in results])
    csv_path = out_dir / "classification.csv"
    table.to_csv(csv_path, index=False)
    written = [csv_path]
    for r in results:
        path = out_dir / f"{r.image_id}_segmentation.png"
        cv2.imwrite(str(path), r.mask.astype(np.uint8) * 255)
        written.append(path)
    return written
