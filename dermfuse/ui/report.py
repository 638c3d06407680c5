"""The case sheet: one page with the pictures, scores, heatmaps, measurements, ABCD criteria, model and
disclaimer; with a follow-up comparison, a second page with both outlines and the changes.

Drawn once with matplotlib's object API (``Figure``, no ``pyplot``: no global state, so two requests
can draw at once) and written as PNG (the pages one under the other) and PDF, beside the case's JSON.
The words come from :mod:`dermfuse.ui.views`, the same as on the page.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from PIL import Image

from .. import render, skin_tone, vocab
from ..diagnosis import Diagnosis
from ..followup import FollowUp
from ..render import DISCLAIMER, percent
from . import views

PAGE_INCHES = (8.27, 11.69)  # A4 portrait
PNG_DPI = 110
MALIGNANT_COLOUR, BENIGN_COLOUR = "#c0392b", "#2e86c1"
WRAP = 115  # characters per line of the text block at 8 pt on A4
TEXT_BOTTOM, SMALLEST_TEXT = 0.075, 5.5  # the text block ends above the disclaimer, shrinking its font down to this


def plain(markdown: str) -> str:
    """Markdown emphasis and code marks removed (the sheet is plain text)."""
    return re.sub(r"\*\*|`|\*", "", markdown)


def case_sheet(image: np.ndarray, diagnosis: Diagnosis, name: str = "uploaded image") -> Figure:
    """The case sheet of one diagnosis as a matplotlib ``Figure`` (A4 portrait, fixed layout)."""
    figure = Figure(figsize=PAGE_INCHES)
    figure.text(0.5, 0.975, "dermfuse case sheet", ha="center", va="top", fontsize=15, fontweight="bold")
    figure.text(0.5, 0.952, name, ha="center", va="top", fontsize=9, color="dimgrey", parse_math=False)
    pictures = render.pictures(image, diagnosis)
    for column, (key, title) in enumerate(render.TITLES.items()):
        stream = key.removeprefix("heat_")
        caption = render.heat_caption(diagnosis, stream) if key.startswith("heat_") and diagnosis.heatmaps else ""
        render.draw_picture(figure, (0.03 + column * 0.24, 0.685, 0.22, 0.245), pictures[key], textwrap.fill(title, 24),
                            caption, heat=key.startswith("heat_"), fontsize=7)
    if diagnosis.assessable:
        _scores(figure.add_axes((0.44, 0.45, 0.51, 0.21)), diagnosis)
    else:
        figure.text(0.44, 0.64, "Not assessable: no diagnosis", fontsize=12, fontweight="bold", color=MALIGNANT_COLOUR)
        figure.text(0.44, 0.61, "\n".join(textwrap.fill(reason, 60) for reason in diagnosis.reasons), va="top",
                    fontsize=8, parse_math=False)
    _words(figure, diagnosis)
    return figure


def _scores(axis, diagnosis: Diagnosis) -> None:
    """Horizontal bars: calibrated score per class with metadata (solid) and, for a model that learned from
    metadata, without (outline)."""
    order = sorted(diagnosis.classes, key=lambda c: diagnosis.scores()[c])
    with_meta, without = diagnosis.scores(True), diagnosis.scores(False)
    compare = bool(views.learned_metadata(diagnosis))
    y = np.arange(len(order))
    shift, height = (0.18, 0.36) if compare else (0.0, 0.6)
    colours = [MALIGNANT_COLOUR if c in vocab.MALIGNANT else BENIGN_COLOUR for c in order]
    axis.barh(y + shift, [with_meta[c] for c in order], height=height, color=colours, label="with metadata")
    if compare:
        axis.barh(y - shift, [without[c] for c in order], height=height, facecolor="none", edgecolor=colours,
                  label="without metadata")
    for yi, c in zip(y, order):
        axis.text(with_meta[c] + 0.01, yi + shift, views.percent(with_meta[c]), va="center", fontsize=7)
    axis.set_yticks(y, [f"{views.short_name(c)} ({c}) · {views.malignancy(c)}" for c in order], fontsize=7)
    for tick, colour in zip(axis.get_yticklabels(), colours):
        tick.set_color(colour)
    axis.set_xlim(0, 1.08)
    axis.set_xlabel("calibrated probability", fontsize=8)
    axis.tick_params(axis="x", labelsize=7)
    if compare:
        axis.legend(fontsize=7, loc="lower right")
    axis.set_title("Scores (red: malignant or pre-malignant)", fontsize=9, loc="left")


def _words(figure: Figure, diagnosis: Diagnosis) -> None:
    """The text block (:func:`sheet_text`), in a smaller font where it would reach the disclaimer, and the disclaimer."""
    words = figure.text(0.05, 0.40, sheet_text(diagnosis), va="top", ha="left", fontsize=8, parse_math=False, linespacing=1.4)
    renderer = FigureCanvasAgg(figure).get_renderer()
    while words.get_fontsize() > SMALLEST_TEXT and words.get_window_extent(renderer).y0 < TEXT_BOTTOM * figure.bbox.height:
        words.set_fontsize(words.get_fontsize() - 0.25)
    figure.text(0.05, 0.03, textwrap.fill(DISCLAIMER, 90), va="bottom", ha="left", fontsize=10, fontweight="bold",
                color=MALIGNANT_COLOUR, parse_math=False)


def sheet_text(diagnosis: Diagnosis) -> str:
    """The sheet's words: top score and, next to it, the warnings that qualify it, then the operating points, patient
    data (which were used, what they changed), where the model looked, measurements, model; wrapped to the page."""
    meta = diagnosis.metadata
    age = "unknown" if meta.get("age") is None else f"{meta['age']:g} years"
    top = diagnosis.top_class
    lines = [
        (f"Highest score: {vocab.DIAGNOSIS_NAMES[top]} ({top}, {views.malignancy(top)}) at {percent(diagnosis.top_probability)}."
         if diagnosis.assessable else "Not assessable, so no diagnosis and no scores: " + " ".join(diagnosis.reasons)),
        "Warnings:",
        *([f"  - {w}" for w in diagnosis.warnings] or ["  - none"]),
        "",
        *[plain(p["statement"]) for p in (diagnosis.operating_points or []) if diagnosis.assessable],
        f"Patient data: age {age}, sex {meta.get('sex')}, site {meta.get('site')}.",
        plain(views.metadata_used(diagnosis)),
        *([plain(views.metadata_effect(diagnosis))] if views.learned_metadata(diagnosis) and diagnosis.assessable else []),
        "",
        "Where the model looked:",
        *[f"  - {plain(line)}" for line in views.focus_lines(diagnosis) + views.orientation_lines(diagnosis)],
        "",
        "Lesion measurements: " + ("; ".join(f"{k} {v}" for k, v in views.measurement_rows(diagnosis)) or "no lesion found") + ".",
        *([f"Skin tone around the lesion: {views.skin_tone_summary(diagnosis, markdown=False)} (ITA after Chardon et "
           f"al. 1991, bands after Del Bino & Bernerd 2013; {skin_tone.CAVEAT[0].lower()}{skin_tone.CAVEAT[1:]})"]
          if diagnosis.skin_tone else []),
        *abcd_lines(diagnosis),
        "",
        f"Model: {render.model_line(diagnosis)}",
        f"Made: {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
    ]
    return "\n".join(textwrap.fill(line, WRAP, subsequent_indent="    ") if line else "" for line in lines)


def abcd_lines(diagnosis: Diagnosis) -> list[str]:
    """The ABCD criteria as one line under the measurements (the page shows each with its numbers, definition and
    source); nothing diagnostic for an image that is not assessable."""
    if not diagnosis.assessable or not diagnosis.abcd:
        return []
    abcd = diagnosis.abcd
    a, b, c = (abcd[key] for key in ("asymmetry", "border", "colours"))
    return [f"  - ABCD rule of dermoscopy (Stolz et al. 1994): A {a['score']}/2, B {b['score']}/8, C {c['score']}/6 "
            f"({', '.join(c['numbers']['colours'])}), D not computed; partial 1.3·A + 0.1·B + 0.5·C = "
            f"{abcd['partial_score']:.1f} (not a total dermoscopy score)"]


def followup_sheet(result: FollowUp, name: str = "uploaded image") -> Figure:
    """The follow-up page: both images with both outlines, the changes, the alignment and its assumptions."""
    figure = Figure(figsize=PAGE_INCHES)
    figure.text(0.5, 0.975, "dermfuse follow-up", ha="center", va="top", fontsize=15, fontweight="bold")
    figure.text(0.5, 0.952, f"{result.previous['image_id'] or 'previous image'} → {result.current['image_id'] or name}",
                ha="center", va="top", fontsize=9, color="dimgrey", parse_math=False)
    render.draw_picture(figure, (0.05, 0.60, 0.90, 0.32), result.picture,
                        "Previous image aligned (left) and current (right): previous outline orange, current green")
    lines = [f"{what}: previous {before}, current {now} ({change})" for what, before, now, change in views.followup_rows(result)]
    lines += ["", f"Largest score changes: {views.score_changes(result)}", "", f"Alignment: {views.alignment_text(result)}",
              "", *result.notes, *[f"Warning: {w}" for w in result.warnings]]
    figure.text(0.05, 0.56, "\n".join(textwrap.fill(line, WRAP) if line else "" for line in lines), va="top", ha="left",
                fontsize=8, parse_math=False, linespacing=1.4)
    figure.text(0.05, 0.03, textwrap.fill(DISCLAIMER, 90), va="bottom", ha="left", fontsize=10, fontweight="bold",
                color=MALIGNANT_COLOUR, parse_math=False)
    return figure


def write_case_report(image: np.ndarray, diagnosis: Diagnosis, folder: Path, name: str = "uploaded image",
                      followup: FollowUp | None = None, followup_problem: str | None = None) -> dict[str, Path]:
    """Write ``dermfuse-case.{png,pdf,json}`` into ``folder``; return {format: path}. With ``followup`` the sheet
    has a second page (the PNG shows it under the first); ``followup_problem`` goes into the JSON."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pages = [case_sheet(image, diagnosis, name)] + ([followup_sheet(followup, name)] if followup is not None else [])
    paths = {kind: folder / f"dermfuse-case.{kind}" for kind in ("png", "pdf", "json")}
    if len(pages) == 1:
        pages[0].savefig(paths["png"], dpi=PNG_DPI)
    else:
        for page in pages:
            page.set_dpi(PNG_DPI)
        Image.fromarray(np.concatenate([render.as_pixels(page) for page in pages], axis=0)).save(paths["png"])
    with PdfPages(paths["pdf"]) as pdf:
        for page in pages:
            pdf.savefig(page)
    result = views.result_json(diagnosis, followup, followup_problem)
    paths["json"].write_text(json.dumps(result, indent=2), encoding="utf-8")
    return paths


def tidy(root: Path, max_age_s: float = 3600) -> None:
    """Delete report folders under ``root`` older than ``max_age_s`` (the app makes one per case)."""
    cutoff = time.time() - max_age_s
    for folder in Path(root).iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)  # another request may be tidying it too
