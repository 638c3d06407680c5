"""A ``Diagnosis`` as the app and the case sheet show it: pictures at screen size, and plain words.

One module for both, so the page and the downloadable report never disagree on a number.
"""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np

from .. import render, skin_tone, vocab
from ..criteria import COLOUR_REFERENCES
from ..diagnosis import Diagnosis
from ..followup import FollowUp
from ..render import TITLES, gray_map, percent

DISPLAY_SIDE = 768  # pixels, longest side of every picture the app sends (a 40-MP upload stays light)
COLOUR_NAMES = tuple(COLOUR_REFERENCES)


def shrink(image: np.ndarray, diagnosis: Diagnosis, max_side: int = DISPLAY_SIDE) -> tuple[np.ndarray, Diagnosis]:
    """The image (H, W, 3) and the diagnosis's full-resolution maps scaled to at most ``max_side``.

    Numbers (scores, focus, measurements) are untouched: they were computed at full resolution.
    """
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image, diagnosis
    size = (max(1, round(width * scale)), max(1, round(height * scale)))

    def resize(values, interpolation=cv2.INTER_LINEAR):
        return cv2.resize(values, size, interpolation=interpolation)

    box = diagnosis.lesion_box
    small = replace(
        diagnosis,
        image=None if diagnosis.image is None else resize(diagnosis.image, cv2.INTER_AREA),
        mask=resize(diagnosis.mask.astype(np.uint8), cv2.INTER_NEAREST).astype(bool),
        mask_probability=resize(diagnosis.mask_probability),
        heatmaps=None if diagnosis.heatmaps is None else {k: resize(v) for k, v in diagnosis.heatmaps.items()},
        attention=None if diagnosis.attention is None else [resize(a) for a in diagnosis.attention],
        lesion_box=None if box is None else [round(v * scale) for v in box],
    )
    return resize(image, cv2.INTER_AREA), small


def fit(picture: np.ndarray, max_side: int = DISPLAY_SIDE) -> np.ndarray:
    """The picture scaled down to at most ``max_side`` on its longest side."""
    scale = max_side / max(picture.shape[:2])
    if scale >= 1:
        return picture
    size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def pictures(image: np.ndarray, diagnosis: Diagnosis) -> dict[str, np.ndarray | None]:
    """The app's pictures (:func:`dermfuse.render.pictures`, titled as ``render.TITLES``), each heatmap with its
    colour bar under it, at most ``DISPLAY_SIDE`` on a side."""
    shown = render.pictures(image, diagnosis)
    return {key: fit(render.with_colour_bar(picture)) if key.startswith("heat_") and picture is not None else picture
            for key, picture in shown.items()}


def attention_pictures(diagnosis: Diagnosis) -> list[tuple[np.ndarray, str]]:
    """The segmenter's attention-gate maps (deep → shallow) as captioned pictures."""
    gates = diagnosis.attention or []
    return [(gray_map(gate), f"gate {i + 1} of {len(gates)}" + (" (deepest, coarse)" if i == 0 else
            " (shallowest, fine)" if i == len(gates) - 1 else "")) for i, gate in enumerate(gates)]


def short_name(label: str) -> str:
    """The diagnosis name without its parenthesised sub-types: 'Benign keratosis-like lesion'."""
    return vocab.DIAGNOSIS_NAMES[label].split(" (")[0]


def malignancy(label: str) -> str:
    return "malignant" if label in vocab.MALIGNANT else "benign"


def score_label(diagnosis: Diagnosis) -> dict[str, float]:
    """Calibrated scores keyed 'Melanoma (mel) · malignant', for ``gr.Label``; None (no bar chart, no top
    class) for an image that is not assessable."""
    if not diagnosis.assessable:
        return None
    return {f"{short_name(c)} ({c}) · {malignancy(c)}": float(p) for c, p in diagnosis.scores().items()}


SCORES_TITLE = "Calibrated scores"


def scores_title(diagnosis: Diagnosis) -> str:
    """The title over the score chart: it says, where the chart is read first, that warnings below qualify the scores
    or that there are none to read (an image that is not assessable)."""
    if not diagnosis.assessable:
        return f"{SCORES_TITLE}: none, the image is not assessable (why: below the pictures)"
    count = len(diagnosis.warnings)
    if not count:
        return SCORES_TITLE
    return f"{SCORES_TITLE} · ⚠️ {count} warning{'s' if count > 1 else ''} below the pictures: read {'it' if count == 1 else 'them'} first"


def learned_metadata(diagnosis: Diagnosis) -> list[str]:
    """The metadata fields the model learned from (none: age, sex and site cannot change its scores)."""
    return list(diagnosis.model.get("metadata_fields", vocab.METADATA_FIELDS))


def scores_table(diagnosis: Diagnosis) -> str:
    """Markdown: every class with its full name, malignancy and score; with and without metadata, and the
    change, only for a model that learned from metadata (for any other the columns would be equal)."""
    with_meta, without = diagnosis.scores(True), diagnosis.scores(False)
    compare = learned_metadata(diagnosis)
    if compare:
        rows = ["| diagnosis | | with metadata | without | change |", "| --- | --- | ---: | ---: | ---: |"]
    else:
        rows = ["| diagnosis | | score |", "| --- | --- | ---: |"]
    for c in sorted(diagnosis.classes, key=lambda c: -with_meta[c]):
        flag = "**malignant**" if c in vocab.MALIGNANT else "benign"
        row = f"| {vocab.DIAGNOSIS_NAMES[c]} (`{c}`) | {flag} | {percent(with_meta[c])} |"
        if compare:
            row += f" {percent(without[c])} | {100 * (with_meta[c] - without[c]):+.1f} pts |"
        rows.append(row)
    return "\n".join(rows)


def field_value(field: str, value) -> str:
    """'age 60', 'male', 'posterior torso': one metadata value in words."""
    return f"age {value:g}" if field == "age" else str(value)


def metadata_used(diagnosis: Diagnosis) -> str:
    """One sentence: which of age, sex and site this result used, and why a given one was not."""
    meta, used, learned = diagnosis.metadata, diagnosis.metadata_used, learned_metadata(diagnosis)
    given = [f for f in vocab.METADATA_FIELDS if meta.get(f) not in (None, vocab.UNKNOWN)]
    lead = "**Patient data used for this result:** "
    if not learned:
        return (lead + "none: this model was trained without patient metadata, so age, sex and site do not change "
                "its scores.")
    if not used and any(f in learned for f in given):
        return lead + "none: the teaching view's metadata switch is off (the image alone)."
    if not given:
        return lead + "none: age, sex and site unknown (the image alone)."
    ignored = [f for f in given if f not in learned]
    unknown = [f for f in vocab.METADATA_FIELDS if f not in given]
    return (lead + (", ".join(field_value(f, meta[f]) for f in used) + "." if used else "none (the image alone).")
            + (f" Not learned by this model, so not used: {', '.join(ignored)}." if ignored else "")
            + (f" Unknown: {', '.join(unknown)}." if unknown else ""))


def metadata_effect(diagnosis: Diagnosis) -> str:
    """One sentence: what the metadata this result used changed."""
    if not diagnosis.metadata_used:
        return "No patient data was used, so the scores with and without metadata are both the image alone."
    with_meta, without = diagnosis.scores(True), diagnosis.scores(False)
    top_with, top_without = max(with_meta, key=with_meta.get), max(without, key=without.get)
    largest = max(diagnosis.classes, key=lambda c: abs(with_meta[c] - without[c]))
    verdict = ("left the top class unchanged" if top_with == top_without
               else f"changed the top class from {short_name(top_without)} to {short_name(top_with)}")
    given = ", ".join(field_value(f, diagnosis.metadata[f]) for f in diagnosis.metadata_used)
    return (f"The metadata ({given}) {verdict}; its largest effect is on {short_name(largest)} "
            f"({100 * (with_meta[largest] - without[largest]):+.1f} percentage points).")


def focus_lines(diagnosis: Diagnosis) -> list[str]:
    """Per stream, under its picture's title: the method that made the map, the share of its heat on the
    lesion, and why the map is not the usual one or is missing; never a number that is not one."""
    if diagnosis.heatmaps is None:
        return ["No heatmaps were computed."]
    methods, notes = diagnosis.heatmap_methods or {}, diagnosis.heatmap_notes or {}
    focus = diagnosis.lesion_focus or {}
    lines = []
    for stream in [s for s in render.STREAMS if s in methods or s in notes]:
        title, note = TITLES[f"heat_{stream}"], notes.get(stream)
        if stream not in methods:
            lines.append(f"{title}: no map. {note}")
            continue
        if diagnosis.lesion_focus is None:
            share = "."
        elif focus.get(stream) is None:
            share = ": none of its heat lies inside the image, so its share on the lesion cannot be measured."
        else:
            share = f": **{percent(focus[stream])}** of the heat lies on the lesion."
        lines.append(f"{title} ({methods[stream]}){share}" + (f" {note}" if note else ""))
    if diagnosis.lesion_focus is None and methods:
        lines.append("No lesion was found, so the share of heat on the lesion cannot be measured.")
    return lines


def orientation_lines(diagnosis: Diagnosis) -> list[str]:
    """Under the focus lines, for a model whose score is of the image as uploaded (not averaged over all eight
    orientations, ``flip_views`` 8): that its heatmaps are of that one orientation. Turned back, the shipped model's
    maps of a turned image agreed only loosely with these (``experiments/orientation.py``)."""
    if not diagnosis.heatmap_methods or diagnosis.model.get("flip_views", 1) == 8:
        return []
    return ["These maps are of the image as it was uploaded: turned or mirrored, the same image can get quite another "
            "map (the real-data model's maps of turned validation images, turned back, correlated with those of the "
            "images as they were at a median of only 0.20–0.47), so read where the heat lies broadly, not its detail."]


def measurement_rows(diagnosis: Diagnosis) -> list[tuple[str, str]]:
    """(quantity, value) pairs of the lesion measurements; empty when no lesion was found."""
    m = diagnosis.measurements
    if not m:
        return []
    return [
        ("area", f"{100 * m['area_fraction']:.1f} % of the image"),
        ("equivalent diameter", f"{m['equivalent_diameter_px']:.0f} px"),
        ("asymmetry (major / minor axis)", f"{m['asymmetry_major_axis']:.2f} / {m['asymmetry_minor_axis']:.2f}"
                                           " (0 = symmetric)"),
        ("border irregularity", f"{m['border_irregularity']:.2f} (1 = circle)"),
        ("colours", ", ".join(m["colours"]) or "none above 5 %"),
        ("touches the image border", "yes" if m["touches_border"] else "no"),
    ]


def skin_tone_summary(diagnosis: Diagnosis, markdown: bool = True) -> str | None:
    """One sentence: the ITA° and band of the skin around the lesion (or why it is not measurable), and the band's
    share of the model's training images where the model stores it; None when not measured. Markdown (the band in
    bold, the stars of L* and b* escaped) or plain text."""
    tone = diagnosis.skin_tone
    if tone is None:
        return None
    star, bold = ("\\*", "**") if markdown else ("*", "")
    if tone["ita"] is None:
        return f"Not measurable: {tone['reason']}.".replace("*", star)
    cast = (f" (the limit of ITA: the skin shows no yellow, median b{star} {tone['yellowness']:.1f} ≤ 0, a colour cast "
            "of the light or the camera)" if tone["colour_cast"] else "")
    found = (f"{bold}ITA {tone['ita']:.0f}° · {tone['band']}{bold}{cast}; median L{star} {tone['lightness']:.1f}, "
             f"b{star} {tone['yellowness']:.1f} over {percent(tone['skin_share'])} of the image.")
    if tone.get("training_share") is not None:
        found += f" This band holds {100 * tone['training_share']:.1f} % of the model's measurable training images."
    return found


def skin_tone_lines(diagnosis: Diagnosis) -> list[str]:
    """Markdown: :func:`skin_tone_summary` under its heading, with the definition and its source."""
    summary = skin_tone_summary(diagnosis)
    if summary is None:
        return []
    about = f"{skin_tone.DEFINITION} Source: {skin_tone.SOURCE}. {skin_tone.CAVEAT}".replace("*", "\\*")
    return ["### Skin tone around the lesion", summary, "", f"<small>{about}</small>"]


def operating_point_lines(diagnosis: Diagnosis) -> list[str]:
    """Markdown: where the melanoma score falls against each operating point the model stores (none: nothing)."""
    points = diagnosis.operating_points
    if not points:
        return []
    first = points[0]
    return ["### Melanoma operating points", *[f"- {p['statement']}" for p in points], "",
            f"Thresholds set on the model's validation split ({first['validation_images']} images, "
            f"{first['validation_positives']} melanomas); its model card gives their rates on the test split."]


def reading(diagnosis: Diagnosis) -> str:
    """Markdown under the pictures: lesion focus, measurements, the patient data used (and, for a model that
    learned from metadata, what they changed), all scores."""
    parts = [] if diagnosis.assessable else [
        "*The image is not assessable: what follows shows what the segmenter and the networks did with it (the outline "
        "may hold no lesion), not findings to act on.*"]
    parts += ["### Where the model looked", *[f"- {line}" for line in focus_lines(diagnosis) + orientation_lines(diagnosis)]]
    rows = measurement_rows(diagnosis)
    parts.append("### Lesion measurements")
    if rows:
        parts += ["| quantity | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows]]
    else:
        parts.append("No lesion was found, so nothing could be measured.")
    parts += skin_tone_lines(diagnosis)
    if not diagnosis.assessable:
        return "\n".join(parts + ["### Scores", "Withheld: the image is not assessable (the reasons are above)."])
    if learned_metadata(diagnosis):
        parts += ["### What the metadata changed", metadata_used(diagnosis), "", metadata_effect(diagnosis)]
    else:
        parts += ["### Patient data", metadata_used(diagnosis), "", "### Scores"]
    parts += ["", scores_table(diagnosis), *operating_point_lines(diagnosis)]
    return "\n".join(parts)


def warnings_text(diagnosis: Diagnosis) -> str:
    """Markdown: first, for an image that is not assessable, that no diagnosis is shown and why; then every
    warning the pipeline raised (or a plain 'none')."""
    parts = []
    if not diagnosis.assessable:
        parts += ["### ⛔ Not assessable: no diagnosis is shown", *[f"- {reason}" for reason in diagnosis.reasons],
                  "", "The scores are withheld; the API and the CLI return them only when asked explicitly.", ""]
    if not diagnosis.warnings:
        return "\n".join(parts + ["**Warnings:** none."])
    return "\n".join(parts + ["**Warnings**", *[f"- ⚠️ {w}" for w in diagnosis.warnings]])


def result_json(diagnosis: Diagnosis, followup: FollowUp | None = None, followup_problem: str | None = None) -> dict:
    """The JSON result (no arrays), plus each class's full name and malignancy; with a previous image, its
    comparison (``followup``) or why there is none (``followup_problem``)."""
    result = json.loads(diagnosis.to_json())
    result["labels"] = {c: {"name": vocab.DIAGNOSIS_NAMES[c], "malignant": c in vocab.MALIGNANT}
                        for c in diagnosis.classes}
    if followup is not None or followup_problem is not None:
        result["followup"] = None if followup is None else followup.to_dict()
        result["followup_problem"] = followup_problem
    return result


def abcd_rows(diagnosis: Diagnosis) -> list[tuple[str, str, str]]:
    """(criterion, score, what was measured) of the ABCD rule, D included as not computed; empty without a result."""
    abcd = diagnosis.abcd
    if not abcd:
        return []
    a, b, c = abcd["asymmetry"], abcd["border"], abcd["colours"]
    axes = []
    for axis in a["numbers"]["axes"]:
        why = [kind for kind in ("shape", "colour") if axis[f"asymmetric_in_{kind}"]]
        axes.append(f"{axis['axis']} axis: shape {axis['shape_non_overlap']:.3f}, colour {axis['colour_difference']:.3f} → "
                    + (f"asymmetric ({', '.join(why)})" if why else "symmetric"))
    segments = b["numbers"]["segments"]
    abrupt = [str(s["segment"]) for s in segments if s["abrupt"]]
    unjudged = b["numbers"]["not_judged"]
    shares = c["numbers"]["shares"]
    found = [f"{name} {percent(shares[name])}" for name in COLOUR_NAMES if shares[name] > 0.005]
    return [
        (f"A · {a['name']}", f"{a['score']} (0–2)", "; ".join(axes)),
        (f"B · {b['name']}", f"{b['score']} (0–8)", "abrupt in segment(s) " + (", ".join(abrupt) or "none")
         + (f"; not judged (skin outside the image): {', '.join(map(str, unjudged))}" if unjudged else "")),
        (f"C · {c['name']}", f"{c['score']} (1–6)", (", ".join(c["numbers"]["colours"]) or "none reaches 5 %")
         + f" — shares: {', '.join(found) or 'none'}"),
        ("D · Differential structures", "not computed", "network, structureless areas, dots, globules, streaks are not detected"),
    ]


def abcd_panel(diagnosis: Diagnosis) -> str:
    """Markdown: the ABCD criteria with the numbers behind each, their definitions and the source; for an image that is
    not assessable, or without a lesion, nothing diagnostic, only why."""
    head = "### ABCD rule of dermoscopy (A, B, C; D not computed)"
    if not diagnosis.assessable:
        return f"{head}\nNot shown: the image is not assessable (the reasons are above)."
    if not diagnosis.abcd:
        return f"{head}\nNo lesion was found, so the criteria cannot be computed."
    abcd = diagnosis.abcd
    rows = ["| criterion | score | what was measured |", "| --- | --- | --- |",
            *[f"| {name} | {score} | {how} |" for name, score, how in abcd_rows(diagnosis)]]
    definitions = [f"- **{abcd[key]['name']}:** {literal(abcd[key]['definition'])}" for key in ("asymmetry", "border", "colours")]
    return "\n".join([
        head, *rows, "",
        f"**{abcd['partial_label'][0].upper() + abcd['partial_label'][1:]}: {abcd['partial_score']:.1f}.** {abcd['not_computed']}",
        "", "**How each was measured** (on the segmenter's outline of this image):", *definitions, "",
        f"*Source:* {abcd['source']}",
    ])


def literal(text: str) -> str:
    """Plain text as Markdown shows it word for word: the asterisks of L*, a*, b* are not emphasis."""
    return text.replace("*", r"\*")


def followup_rows(result: FollowUp) -> list[tuple[str, str, str, str]]:
    """(quantity, previous, current, change) of a follow-up comparison."""
    before, now, change = result.previous, result.current, result.change

    def score(side: dict) -> str:
        return f"{short_name(side['top_class'])} ({side['top_class']}) {percent(side['scores'][side['top_class']])}"

    new, gone = change["colours_new"], change["colours_gone"]
    return [
        ("area (px of the current image)", f"{before['area_px']:,.0f}", f"{now['area_px']:,.0f}", f"{change['area_percent']:+.1f} %"),
        ("greatest diameter (px)", f"{before['greatest_diameter_px']:.0f}", f"{now['greatest_diameter_px']:.0f}",
         f"{change['greatest_diameter_percent']:+.1f} %"),
        ("equivalent diameter (px)", f"{before['equivalent_diameter_px']:.0f}", f"{now['equivalent_diameter_px']:.0f}",
         f"{change['equivalent_diameter_percent']:+.1f} %"),
        ("asymmetry (ABCD A, 0–2)", str(before["asymmetry"]), str(now["asymmetry"]), f"{change['asymmetry']:+d}"),
        ("colours (ABCD C)", ", ".join(before["colours"]) or "—", ", ".join(now["colours"]) or "—",
         f"{change['colour_count']:+d}" + (f"; new: {', '.join(new)}" if new else "") + (f"; gone: {', '.join(gone)}" if gone else "")),
        ("highest score", score(before), score(now), "top class changed" if change["top_class_changed"] else "same top class"),
    ]


def followup_panel(result: FollowUp | None, problem: str | None = None) -> str:
    """Markdown: the change since the previous image, or why there is no comparison; empty when none was asked."""
    head = "### Follow-up: change since the previous image"
    if problem:
        return f"{head}\n**No comparison:** {problem}\n\nThe diagnosis above is of the current image alone."
    if result is None:
        return ""
    rows = ["| | previous (aligned) | current | change |", "| --- | --- | --- | --- |",
            *[f"| {name} | {before} | {now} | {change} |" for name, before, now, change in followup_rows(result)]]
    return "\n".join([
        head, "Previous outline orange, current green, on each image.", "", *rows, "",
        f"**Largest score changes:** {score_changes(result)}", "", f"**Alignment:** {alignment_text(result)}",
        "", *[f"- {note}" for note in result.notes], *[f"- ⚠️ {warning}" for warning in result.warnings],
    ])


def score_changes(result: FollowUp, count: int = 3) -> str:
    """The ``count`` largest changes of the model's scores, in percentage points."""
    moved = sorted(result.change["scores"].items(), key=lambda item: -abs(item[1]))[:count]
    return ", ".join(f"{short_name(c)} ({c}) {100 * d:+.1f} pts" for c, d in moved) + "."


def alignment_text(result: FollowUp) -> str:
    """How the previous image was aligned, and how well the two then match."""
    align = result.alignment
    return (f"{align['method']}. Rotation {align['rotation_deg']:.0f}°, scale {align['scale']:.3f}, lightness correlation "
            f"{align['lightness_correlation']:.2f}, overlap of the aligned outlines (IoU) {result.change['overlap_iou']:.2f}.")
