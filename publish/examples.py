"""The app's real examples: a few CC0 ISIC dermoscopy originals, shrunk, with their table.

    python -m publish.examples ../shared/data/isic_cc0          # → examples/ (replaces its images and tables)

Only CC0 images may ship with the code, each with its ISIC id, diagnosis and licence stated, so the
chosen ids are checked against the source's ``labels.csv`` (its ``licence`` column must say CC0).
The originals are up to 6 MP; at 600 px on the longest side (JPEG quality 90) each is well under
100 KB and still far larger than what the models see (at most 256 px), so the repository stays small
and the app's answers do not change for want of pixels.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from PIL import Image, ImageOps

from dermfuse import vocab
from dermfuse.ui.examples import EXAMPLES, EXAMPLES_TABLE

COLUMNS = ("file", "isic_id", "diagnosis", "age", "sex", "site", "licence", "source")
LONGEST_SIDE = 600
JPEG_QUALITY = 90
# Three melanomas and three nevi (the CC0 set holds only these two diagnoses), with and without age and
# sex. None is in a training split of a shipped model (dermfuse-small-ham10000's segmenter held them out;
# tests/test_examples.py checks it), and when chosen none drew that model's out-of-distribution warning,
# so the gallery shows answers, right and wrong, rather than refusals.
CHOSEN = ("ISIC_0000049", "ISIC_0000054", "ISIC_0000141", "ISIC_0000000", "ISIC_0000008", "ISIC_0000025")


def read_labels(source: Path) -> dict[str, dict[str, str]]:
    """ISIC id → row of the CC0 set's ``labels.csv`` (image, label, age, sex, site, licence)."""
    table = source / "labels.csv"
    if not table.is_file():
        raise FileNotFoundError(f"{table} not found: give the folder of the CC0 ISIC originals (images/ + labels.csv)")
    with open(table, newline="", encoding="utf-8") as rows:
        return {row["image"]: row for row in csv.DictReader(rows)}


def split_licence(text: str) -> tuple[str, str]:
    """'CC0 (ISIC archive, UDA-1)' → ('CC0', 'ISIC archive, UDA-1'): the licence and the attribution."""
    licence, _, source = text.partition(" (")
    return licence.strip(), source.rstrip(")").strip()


def make_examples(source: Path, out: Path = EXAMPLES, chosen: tuple[str, ...] = CHOSEN) -> list[dict[str, str]]:
    """Write the shrunk images, ``examples.csv`` and ``README.md`` into ``out``; return the table's rows."""
    labels = read_labels(source)
    rows = []
    for isic_id in chosen:
        if isic_id not in labels:
            raise ValueError(f"{isic_id} is not in {source / 'labels.csv'}: choose one of its images")
        label = labels[isic_id]
        licence, attribution = split_licence(label["licence"])
        if licence != "CC0":
            raise ValueError(f"{isic_id} is licensed {label['licence']!r}: only CC0 images may ship with the code")
        rows.append({"file": f"{isic_id}.jpg", "isic_id": isic_id, "diagnosis": label["label"], "age": label["age"],
                     "sex": label["sex"] or vocab.UNKNOWN, "site": label["site"] or vocab.UNKNOWN,
                     "licence": licence, "source": attribution})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.jpg"):
        old.unlink()
    for row in rows:
        with Image.open(source / "images" / row["file"]) as original:
            image = ImageOps.exif_transpose(original).convert("RGB")
        image.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.Resampling.LANCZOS)
        image.save(out / row["file"], quality=JPEG_QUALITY, optimize=True)  # no EXIF: nothing but pixels leaves
    with open(out / EXAMPLES_TABLE, "w", newline="", encoding="utf-8") as table:
        writer = csv.DictWriter(table, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "README.md").write_text(readme(rows), encoding="utf-8")
    return rows


def readme(rows: list[dict[str, str]]) -> str:
    lines = [
        "# Examples: real dermoscopy images (CC0)",
        "",
        "The app's example gallery. Each image is an original from the ISIC archive released under CC0,",
        "named by its ISIC id, shrunk to 600 px on the longest side (JPEG quality 90). The diagnosis, age and",
        "sex are the archive's own; `examples.csv` holds the same table for the app. Made with",
        "`python -m publish.examples ../shared/data/isic_cc0`.",
        "",
        "None of them is in a training split of a shipped model (their `splits.csv`): the classifiers learned",
        "from HAM10000, PH2 and phantoms, and `dermfuse-small-ham10000`'s segmenter held these ISIC 2018",
        "Task 1 images out (validation or test split).",
        "",
        "| file | ISIC id | diagnosis | age | sex | licence | source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(f"| [{row['file']}]({row['file']}) | {row['isic_id']} | {vocab.DIAGNOSIS_NAMES[row['diagnosis']]} "
                     f"(`{row['diagnosis']}`) | {row['age'] or 'unknown'} | {row['sex']} | {row['licence']} | "
                     f"{row['source']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m publish.examples CC0_FOLDER   (e.g. ../shared/data/isic_cc0)")
    rows = make_examples(Path(args[0]))
    sizes = ", ".join(f"{r['file']} {(EXAMPLES / r['file']).stat().st_size // 1024} KB" for r in rows)
    print(f"wrote {len(rows)} examples to {EXAMPLES}: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
