"""Readers for the public dermoscopy datasets, each returning the one unified table of :mod:`dermfuse.data.table`.

Every reader takes the dataset folder as distributed (layouts in ``design.md``), reads ground truth
by column NAME (never position), maps sex and site to :mod:`dermfuse.vocab`, and checks each row:
unknown label/sex/site, impossible age, missing image file, mask of another size than its image.
``on_error="raise"`` stops at the first bad row with the file and 1-based line; ``"skip"`` drops it and
records why in ``table.attrs["skipped"]``. ``images=False`` builds the table from the CSVs alone
(paths NA), e.g. for statistics, splits and the metadata benchmark.

HAM10000's ``dx_type`` (how the diagnosis was confirmed) is never read: it leaks the label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from dermfuse.data.table import (
    IMAGE_SUFFIXES,
    FileIndex,
    RowProblems,
    canonical_image_id,
    check_masks,
    checked_mask,
    csv_line,
    finish_table,
    read_csv,
    require_columns,
)
from dermfuse.vocab import (
    CSV_COLUMN,
    HAM10000_CLASSES,
    ISIC2018_CLASSES,
    ISIC2019_CLASSES,
    normalize_age,
    normalize_sex,
    normalize_site,
)

ALL_CLASSES: tuple[str, ...] = tuple(dict.fromkeys(HAM10000_CLASSES + ISIC2019_CLASSES))
ISIC2018_SPLITS: tuple[str, ...] = ("Training", "Validation", "Test")
# PH2 "Clinical Diagnosis": 0 common nevus, 1 atypical nevus (both benign melanocytic: nv), 2 melanoma.
PH2_DIAGNOSIS: dict[str, str] = {"0": "nv", "1": "nv", "2": "mel"}


def read_ham10000(root, images: bool = True, masks="auto", on_error: str = "raise") -> pd.DataFrame:
    """HAM10000: ``HAM10000_metadata.csv`` + ``{image_id}.jpg`` in ``HAM10000_images_part_1/``,
    ``HAM10000_images_part_2/``, ``HAM10000_images/`` or the root; optional lesion masks in
    ``HAM10000_segmentations_lesion_tschandl/{image_id}_segmentation.png`` (``masks``: 'auto' uses
    those present, True requires one per image, False ignores them). Extra columns (``dataset``)
    are ignored; ``dx_type`` is never read."""
    root, problems = Path(root), RowProblems(on_error)
    check_masks(masks)
    csv_path = root / "HAM10000_metadata.csv"
    frame = read_csv(csv_path)
    require_columns(frame, ("lesion_id", "image_id", "dx", "age", "sex", "localization"), csv_path)
    if images:
        image_dirs = _subfolders(root, ("HAM10000_images_part_1", "HAM10000_images_part_2", "HAM10000_images"))
        image_index = FileIndex([*image_dirs, root])
        mask_index = FileIndex(_subfolders(root, ("HAM10000_segmentations_lesion_tschandl",)), (".png",))
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        image_id = record["image_id"].strip()
        with problems.row(f"{csv_path} line {csv_line(index)} ({image_id})"):
            row = _row(image_id, _label(record["dx"], HAM10000_CLASSES), record["age"], record["sex"],
                       record["localization"], record["lesion_id"], "ham10000")
            if images:
                row["image_path"] = image_index.require(image_id)
                row["mask_path"] = checked_mask(row["image_path"], mask_index.find(f"{image_id}_segmentation"), masks)
            rows.append(row)
    return finish_table(rows, problems, "ham10000")


def read_isic2018_task1(root, split: str = "Training", masks="auto", on_error: str = "raise") -> pd.DataFrame:
    """ISIC 2018 Task 1 (segmentation): ``ISIC2018_Task1-2_{split}_Input/ISIC_*.jpg`` with masks
    ``ISIC2018_Task1_{split}_GroundTruth/ISIC_*_segmentation.png``. No labels or metadata:
    ``label`` is NA, sex and site ``unknown``."""
    root, problems = Path(root), RowProblems(on_error)
    check_masks(masks)
    _check_split(split)
    input_dir = root / f"ISIC2018_Task1-2_{split}_Input"
    if not input_dir.is_dir():
        raise ValueError(f"{input_dir} not found: expected the unzipped ISIC 2018 Task 1 {split} input folder")
    image_index = FileIndex([input_dir], (".jpg", ".jpeg", ".png"))
    mask_index = FileIndex([root / f"ISIC2018_Task1_{split}_GroundTruth"], (".png",))
    rows = []
    for stem, image_path in sorted(image_index.by_stem.items()):
        with problems.row(image_path):
            row = _row(canonical_image_id(stem), None, None, None, None, None, "isic2018_task1")
            row["image_path"] = image_path
            row["mask_path"] = checked_mask(image_path, mask_index.find(f"{stem}_segmentation"), masks)
            rows.append(row)
    return finish_table(rows, problems, "isic2018_task1")


def read_isic2018_task3(
    root, split: str = "Validation", images: bool = True, image_dirs: Sequence | None = None, on_error: str = "raise"
) -> pd.DataFrame:
    """ISIC 2018 Task 3 (classification): ``ISIC2018_Task3_{split}_GroundTruth.csv`` (one-hot
    ``MEL, NV, BCC, AKIEC, BKL, DF, VASC``, read by name) in the root or its
    ``ISIC2018_Task3_{split}_GroundTruth/`` folder. Images are HAM10000-style JPEGs, looked up in
    ``image_dirs`` or by default ``ISIC2018_Task3_{split}_Input/`` and the root. No metadata."""
    root, problems = Path(root), RowProblems(on_error)
    _check_split(split)
    name = f"ISIC2018_Task3_{split}_GroundTruth.csv"
    candidates = [root / name, root / f"ISIC2018_Task3_{split}_GroundTruth" / name]
    csv_path = next((path for path in candidates if path.is_file()), candidates[0])
    frame = read_csv(csv_path)
    require_columns(frame, ("image", *(CSV_COLUMN[c] for c in ISIC2018_CLASSES)), csv_path)
    if images:
        image_index = FileIndex(image_dirs or [root / f"ISIC2018_Task3_{split}_Input", root])
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        image_name = record["image"].strip()
        with problems.row(f"{csv_path} line {csv_line(index)} ({image_name})"):
            row = _row(canonical_image_id(image_name), _one_hot(record, ISIC2018_CLASSES),
                       None, None, None, None, "isic2018_task3")
            if images:
                row["image_path"] = image_index.require(image_name)
            rows.append(row)
    return finish_table(rows, problems, "isic2018_task3")


def read_isic2019(root, images: bool = True, on_error: str = "raise") -> pd.DataFrame:
    """ISIC 2019 training set: ``ISIC_2019_Training_GroundTruth.csv`` (one-hot, read by name) joined
    by image name with ``ISIC_2019_Training_Metadata.csv`` (sex column ``sex`` or ``gender``),
    images ``ISIC_2019_Training_Input/{image}.jpg``. ``image_id`` drops the ``_downsampled``
    suffix, ``image_path`` keeps the real file name. A row labelled UNK is an error: UNK is never a
    training label."""
    root, problems = Path(root), RowProblems(on_error)
    truth_path = root / "ISIC_2019_Training_GroundTruth.csv"
    meta_path = root / "ISIC_2019_Training_Metadata.csv"
    truth, meta = read_csv(truth_path), read_csv(meta_path)
    require_columns(truth, ("image", *(CSV_COLUMN[c] for c in ISIC2019_CLASSES), "UNK"), truth_path)
    sex_column = "sex" if "sex" in meta.columns else "gender"
    require_columns(meta, ("image", "age_approx", "anatom_site_general", sex_column), meta_path)
    meta_rows = {}
    for index, record in enumerate(meta.to_dict("records")):
        meta_rows.setdefault(record["image"].strip(), (csv_line(index), record))
    if images:
        image_index = FileIndex([root / "ISIC_2019_Training_Input", root])
    rows = []
    for index, record in enumerate(truth.to_dict("records")):
        image_name = record["image"].strip()
        meta_line, info = meta_rows.get(image_name, (None, {}))
        where = f"{truth_path} line {csv_line(index)}"
        where += f", {meta_path.name} line {meta_line}" if meta_line else f" (no row in {meta_path.name})"
        with problems.row(f"{where} ({image_name})"):
            if _number(record["UNK"], "UNK") == 1.0:
                raise ValueError("labelled UNK: UNK (unknown diagnosis) is never a training label")
            row = _row(canonical_image_id(image_name), _one_hot(record, ISIC2019_CLASSES), info.get("age_approx"),
                       info.get(sex_column), info.get("anatom_site_general"), info.get("lesion_id"), "isic2019")
            if images:
                row["image_path"] = image_index.require(image_name)
            rows.append(row)
    return finish_table(rows, problems, "isic2019")


def read_image_folder(
    root, classes: Sequence[str] | None = None, images: bool = True, masks="auto", on_error: str = "raise"
) -> pd.DataFrame:
    """A plain folder: ``images/{id}.jpg|png``, optional ``masks/{id}_segmentation.png`` and
    ``labels.csv`` with columns ``image,label`` and optionally ``age`` (or ``age_approx``), ``sex``
    (or ``gender``), ``site`` (or ``anatom_site_general``, ``localization``), ``lesion_id``.
    Labels must be in ``classes`` (default: any dermfuse class). Without ``labels.csv`` every image
    in ``images/`` is listed unlabelled (label NA), e.g. for batch prediction."""
    root, problems = Path(root), RowProblems(on_error)
    check_masks(masks)
    labels_path, image_dir = root / "labels.csv", root / "images"
    allowed = tuple(classes) if classes is not None else ALL_CLASSES
    image_index = FileIndex([image_dir]) if images or not labels_path.is_file() else None
    if labels_path.is_file():
        frame = read_csv(labels_path)
        require_columns(frame, ("image", "label"), labels_path)
    elif image_index is not None and image_index.by_stem:
        frame = pd.DataFrame({"image": sorted(image_index.by_stem)})
    else:
        raise ValueError(f"{root} has neither labels.csv nor images in {image_dir}: expected the folder layout")
    columns = find_columns(frame.columns, _FOLDER_FIELDS)
    mask_index = FileIndex([root / "masks"], (".png",))
    rows = []
    for index, record in enumerate(frame.to_dict("records")):
        image_name = record["image"].strip()
        suffix = Path(image_name).suffix
        stem = image_name[: -len(suffix)] if suffix.lower() in IMAGE_SUFFIXES else image_name  # "A1.jpg" or "A1"
        value = {field: (record[column] if column else None) for field, column in columns.items()}
        where = f"{labels_path} line {csv_line(index)}" if "label" in record else str(image_dir)
        with problems.row(f"{where} ({image_name})"):
            label = _label(record["label"], allowed) if "label" in record else None
            row = _row(canonical_image_id(stem), label, value["age"], value["sex"], value["site"],
                       value["lesion_id"], "folder")
            if images:
                row["image_path"] = image_index.require(stem)
                row["mask_path"] = checked_mask(row["image_path"], mask_index.find(f"{stem}_segmentation"), masks)
            rows.append(row)
    return finish_table(rows, problems, "folder")


def read_ph2(root, images: bool = True, masks="auto", on_error: str = "raise") -> pd.DataFrame:
    """PH2 as distributed: ``PH2_dataset.txt`` and ``PH2 Dataset images/IMDxxx/IMDxxx_Dermoscopic_Image/
    IMDxxx.bmp`` with masks ``IMDxxx_lesion/IMDxxx_lesion.bmp`` (the root may also be the folder
    holding ``PH2Dataset/``). Clinical Diagnosis 0 and 1 (common, atypical nevus) → ``nv``,
    2 → ``mel``. No metadata: sex and site ``unknown``, age NA."""
    root, problems = Path(root), RowProblems(on_error)
    check_masks(masks)
    if not (root / "PH2_dataset.txt").is_file() and (root / "PH2Dataset").is_dir():
        root = root / "PH2Dataset"
    table_path, case_root = root / "PH2_dataset.txt", root / "PH2 Dataset images"
    rows = []
    for line, record in parse_ph2_table(table_path):
        case = record["Name"]
        with problems.row(f"{table_path} line {line} ({case})"):
            diagnosis = record["Clinical Diagnosis"]
            if diagnosis not in PH2_DIAGNOSIS:
                raise ValueError(f"unknown Clinical Diagnosis {diagnosis!r}: expected 0, 1 or 2")
            row = _row(case, PH2_DIAGNOSIS[diagnosis], None, None, None, None, "ph2")
            if images:
                row["image_path"] = FileIndex([case_root / case / f"{case}_Dermoscopic_Image"]).require(case)
                mask_path = FileIndex([case_root / case / f"{case}_lesion"]).find(f"{case}_lesion")
                row["mask_path"] = checked_mask(row["image_path"], mask_path, masks)
            rows.append(row)
    return finish_table(rows, problems, "ph2")


def parse_ph2_table(path) -> list[tuple[int, dict[str, str]]]:
    """Parse ``PH2_dataset.txt`` into (1-based line, {column: value}) for every case row.

    The file is a text table whose cells are separated by ``||`` between column groups and ``|``
    inside the dermoscopic-criteria group, e.g.::

        ||   Name || Histological Diagnosis || Clinical Diagnosis || Asymmetry | Pigment Network | ... ||   Colors ||
        || IMD003 ||                        ||                  0 ||         0 |               T | ... ||    3  4 ||

    Both separators are treated alike, so each line splits into the header's cells; lines that are
    not case rows (title, blank, the legend at the end) are passed over. Assumption (documented
    public copies of the file agree): one header line naming ``Name`` and ``Clinical Diagnosis``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} not found: expected PH2's PH2_dataset.txt beside 'PH2 Dataset images'")
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    header_at = next((i for i, text in enumerate(lines) if "Name" in text and "Clinical Diagnosis" in text), None)
    if header_at is None:
        raise ValueError(f"{path} has no header line naming 'Name' and 'Clinical Diagnosis': is it PH2_dataset.txt?")
    names = _ph2_cells(lines[header_at])
    cases = []
    for number, text in enumerate(lines[header_at + 1 :], start=header_at + 2):
        cells = _ph2_cells(text)
        if not cells or not re.fullmatch(r"IMD\d+", cells[0]):
            continue
        if len(cells) != len(names):
            raise ValueError(f"{path} line {number}: {len(cells)} cells where the header has {len(names)}")
        cases.append((number, dict(zip(names, cells))))
    return cases


def read_dataset(root, layout: str | None = None, **options) -> pd.DataFrame:
    """Read the dataset in ``root``, detecting its layout from the files present (or give ``layout``).

    ``options`` go to the reader (e.g. ``images=False``, ``split="Test"``, ``on_error="skip"``).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} not found")
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        return LAYOUTS[layout][1](root, **options)
    found = [name for name, (detect, _, _) in LAYOUTS.items() if detect(root)]
    if not found:
        known = "\n".join(f"  {name}: {markers}" for name, (_, _, markers) in LAYOUTS.items())
        raise ValueError(f"no known dataset layout in {root}; the layouts dermfuse reads are:\n{known}")
    if len(found) > 1:
        raise ValueError(f"{root} holds several dataset layouts ({', '.join(found)}): pass layout= one of them")
    return LAYOUTS[found[0]][1](root, **options)


def _row(image_id, label, age, sex, site, lesion_id, source) -> dict:
    """One table row with metadata mapped to the vocabularies (``ValueError`` on a value outside them)."""
    age = normalize_age(age)
    lesion_id = None if lesion_id is None or str(lesion_id).strip() == "" else str(lesion_id).strip()
    return {
        "image_id": image_id, "image_path": None, "mask_path": None, "label": label,
        "age": float("nan") if age is None else age, "sex": normalize_sex(sex), "site": normalize_site(site),
        "lesion_id": lesion_id, "source": source,
    }


def _label(value, classes: Sequence[str]) -> str:
    label = str(value).strip().lower()
    if label not in classes:
        raise ValueError(f"unknown label {value!r}: expected one of {', '.join(classes)}")
    return label


def _number(value, column: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"column {column} holds {value!r}, not a number") from None


def _one_hot(record: dict, classes: Sequence[str]) -> str:
    """The one class whose ground-truth column holds 1 (the others 0), read by column name."""
    values = {name: _number(record[CSV_COLUMN[name]], CSV_COLUMN[name]) for name in classes}
    if any(value not in (0.0, 1.0) for value in values.values()):
        raise ValueError(f"one-hot ground truth must hold 0 or 1, got {values}")
    positive = [name for name, value in values.items() if value == 1.0]
    if len(positive) != 1:
        raise ValueError(f"{len(positive)} classes marked 1 ({', '.join(positive) or 'none'}): exactly one is needed")
    return positive[0]


def _check_split(split: str) -> None:
    if split not in ISIC2018_SPLITS:
        raise ValueError(f"split={split!r}: expected one of {', '.join(ISIC2018_SPLITS)}")


def _subfolders(root: Path, names: Sequence[str]) -> list[Path]:
    """The folders among ``names`` present in ``root``, matched case-insensitively (Kaggle copies lower-case them)."""
    present = {p.name.lower(): p for p in root.iterdir() if p.is_dir()} if root.is_dir() else {}
    return [present[name.lower()] for name in names if name.lower() in present]


def _ph2_cells(text: str) -> list[str]:
    text = text.strip()
    if not text.startswith("|"):
        return []
    return [cell.strip() for cell in text.replace("||", "|").strip("|").split("|")]


# The names HAM10000, ISIC and our own tables give each patient field, in order of preference.
METADATA_COLUMNS = {
    "age": ("age", "age_approx"),
    "sex": ("sex", "gender"),
    "site": ("site", "anatom_site_general", "localization"),
}
_FOLDER_FIELDS = {**METADATA_COLUMNS, "lesion_id": ("lesion_id",)}


def find_columns(columns, aliases: dict[str, tuple[str, ...]]) -> dict[str, str | None]:
    """For each field of ``aliases``, the first of its names among ``columns`` (matched case-insensitively: "Age" is
    age), or ``None``."""
    present = {str(c).lower(): c for c in columns}
    return {field: next((present[name] for name in names if name in present), None) for field, names in aliases.items()}


LAYOUTS: dict[str, tuple[Callable[[Path], bool], Callable[..., pd.DataFrame], str]] = {
    "ham10000": (lambda r: (r / "HAM10000_metadata.csv").is_file(), read_ham10000, "HAM10000_metadata.csv"),
    "isic2019": (lambda r: (r / "ISIC_2019_Training_GroundTruth.csv").is_file(), read_isic2019,
                 "ISIC_2019_Training_GroundTruth.csv + ISIC_2019_Training_Metadata.csv"),
    "isic2018_task3": (lambda r: any(r.glob("ISIC2018_Task3_*_GroundTruth*")), read_isic2018_task3,
                       "ISIC2018_Task3_{split}_GroundTruth.csv"),
    "isic2018_task1": (lambda r: any(r.glob("ISIC2018_Task1-2_*_Input")), read_isic2018_task1,
                       "ISIC2018_Task1-2_{split}_Input/ + ISIC2018_Task1_{split}_GroundTruth/"),
    "ph2": (lambda r: (r / "PH2_dataset.txt").is_file() or (r / "PH2Dataset").is_dir(), read_ph2,
            "PH2_dataset.txt + 'PH2 Dataset images/'"),
    "folder": (lambda r: (r / "labels.csv").is_file() or (r / "images").is_dir(), read_image_folder,
               "images/ (+ masks/{id}_segmentation.png, labels.csv with image,label)"),
}
