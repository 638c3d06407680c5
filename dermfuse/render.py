"""Pictures of a diagnosis: the lesion outline, heatmaps over the image, their colour bar and titles.

One module draws them for the app, the case sheet and the CLI, so all three show the same picture
under the same plain title, and every heatmap with the colour bar that says what its colours mean.
Heatmaps are drawn with OpenCV's jet colour map; :data:`HEAT_COLOURS` is that same map for
matplotlib, so a colour bar matches its overlay pixel for pixel. Figures use matplotlib's object API
(``Figure``, no ``pyplot``: no global state, so two requests can draw at once).
"""

from __future__ import annotations

import textwrap
from functools import lru_cache

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure

from . import vocab
from .diagnosis import Diagnosis

OUTLINE_RGB = (0, 255, 120)
STREAMS = ("image", "lesion")
TITLES = {
    "outline": "The lesion as the segmenter outlined it",
    "lesion": "What the lesion network was shown",
    "heat_image": "What the whole-image network looked at",
    "heat_lesion": "What the lesion network looked at",
}
HEAT_SCALE = "0 = no attention · 1 = most attention (in this map)"
DISCLAIMER = "Research and teaching software, not a medical device: it gives no diagnosis."
HEAT_TICKS = {0.0: "0", 0.25: "", 0.5: "0.5", 0.75: "", 1.0: "1"}


def heat_colours(values: np.ndarray) -> np.ndarray:
    """[0, 1] values (H, W) → RGB uint8 (H, W, 3) in the jet colour map, as every heatmap is drawn."""
    coloured = cv2.applyColorMap(np.uint8(255 * np.clip(values, 0, 1)), cv2.COLORMAP_JET)
    return cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)


HEAT_COLOURS = ListedColormap(heat_colours(np.linspace(0, 1, 256)[None])[0] / 255, name="dermfuse_heat")


def percent(value: float) -> str:
    return f"{100 * value:.0f} %"


def outline(image: np.ndarray, mask: np.ndarray, colour=OUTLINE_RGB, thickness: int | None = None) -> np.ndarray:
    """The image (H, W, 3 uint8) with the mask's outline drawn on it."""
    out = np.ascontiguousarray(image.copy())
    if mask.any():
        thickness = thickness or line_width(mask.shape)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, thickness)
    return out


def line_width(shape: tuple[int, int]) -> int:
    return max(2, round(max(shape[:2]) / 250))


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, mask: np.ndarray | None = None,
                 box: tuple[int, int, int, int] | list[int] | None = None) -> np.ndarray:
    """A [0, 1] heatmap (H, W) in the jet colour map blended over the image, optionally outlined.

    ``box`` (x0, y0, x1, y1, may reach outside the image): the map covers only this part (the lesion
    network saw the image cut from it). There it is blended and the box is outlined; outside it the
    image is shown in grey, so "not seen" is not mistaken for the colour of "no attention".
    """
    out = cv2.addWeighted(image, 1 - alpha, heat_colours(heat), alpha, 0)
    if box is not None:
        grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        height, width = heat.shape
        x0, y0, x1, y1 = box
        seen = np.zeros((height, width), bool)
        seen[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        out = np.where(seen[..., None], out, grey)
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 255, 255), line_width(heat.shape))
    return outline(out, mask, colour=(255, 255, 255)) if mask is not None else out


def gray_map(values: np.ndarray) -> np.ndarray:
    """A [0, 1] map (H, W) as an RGB image (for the attention-gate maps)."""
    return cv2.cvtColor(cv2.applyColorMap(np.uint8(255 * np.clip(values, 0, 1)), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)


def pictures(image: np.ndarray, diagnosis: Diagnosis) -> dict[str, np.ndarray | None]:
    """RGB pictures keyed as :data:`TITLES`: ``outline`` (lesion border on the image), ``lesion`` (what the
    lesion stream saw), ``heat_image`` / ``heat_lesion`` (each stream's map over the image, lesion outlined
    in white, the lesion stream's only over the box its image was cut from; None when that stream has no map).
    ``image`` and ``diagnosis`` at the same size (see ``dermfuse.ui.views.shrink``)."""
    heat = diagnosis.heatmaps or {}
    mask = diagnosis.mask if diagnosis.lesion_found else None
    boxes = {"image": None, "lesion": diagnosis.lesion_box}
    return {
        "outline": outline(image, diagnosis.mask),
        "lesion": diagnosis.lesion_image,
        **{f"heat_{s}": heat_overlay(image, heat[s], mask=mask, box=boxes[s]) if s in heat else None for s in STREAMS},
    }


def heat_caption(diagnosis: Diagnosis, stream: str) -> str:
    """Under a stream's heatmap title: the method that made it and the share of its heat on the lesion."""
    method = (diagnosis.heatmap_methods or {}).get(stream)
    if method is None:
        return "no usable map"
    share = (diagnosis.lesion_focus or {}).get(stream)
    return method + ("" if share is None else f"\n{percent(share)} of the heat on the lesion")


def colour_bar(figure: Figure, rect: tuple[float, float, float, float], fontsize: float = 7) -> None:
    """A horizontal colour bar of the heatmaps' scale in ``rect`` (figure fractions), labelled in words
    (wrapped to the bar's width)."""
    axis = figure.add_axes(rect)
    bar = figure.colorbar(ScalarMappable(Normalize(0, 1), HEAT_COLOURS), cax=axis, orientation="horizontal")
    bar.set_ticks(list(HEAT_TICKS), labels=list(HEAT_TICKS.values()))
    bar.ax.tick_params(labelsize=fontsize, length=2, pad=1)
    bar.set_label(scale_words(rect[2] * figure.get_figwidth(), fontsize), fontsize=fontsize, labelpad=1)


def scale_words(inches: float, fontsize: float) -> str:
    """The colour bar's words, wrapped to a width in inches (at ~0.55 em per character)."""
    return textwrap.fill(HEAT_SCALE, max(12, int(inches * 72 / (0.55 * fontsize))))


def draw_picture(figure: Figure, rect: tuple[float, float, float, float], picture: np.ndarray | None, title: str,
                 caption: str = "", heat: bool = False, fontsize: float = 8) -> None:
    """A titled picture in ``rect`` (figure fractions); a heatmap's lowest fifth holds its colour bar."""
    left, bottom, width, height = rect
    if heat:
        if picture is not None:
            colour_bar(figure, (left + 0.1 * width, bottom + 0.09 * height, 0.8 * width, 0.035 * height), fontsize - 1)
        bottom, height = bottom + 0.2 * height, 0.8 * height
    axis = figure.add_axes((left, bottom, width, height))
    axis.set_anchor("S")  # the picture sits on its colour bar, whatever its aspect
    axis.set_axis_off()
    axis.set_title(title + (f"\n{caption}" if caption else ""), fontsize=fontsize)
    if picture is None:
        axis.text(0.5, 0.5, "no map", ha="center", va="center", fontsize=fontsize, color="grey")
    else:
        axis.imshow(picture)


def as_pixels(figure: Figure) -> np.ndarray:
    """A figure rendered to an RGB uint8 array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@lru_cache(maxsize=8)
def colour_bar_strip(width: int) -> np.ndarray:
    """The colour bar as a strip of pixels ``width`` wide, its words sized to the width (to put under a picture);
    the strip grows by a line for each line its words wrap to, so none is cut off."""
    dpi, fontsize, bar_width = 100, max(5.0, 0.024 * width), 0.88
    one_line = max(40, round(0.17 * width))  # pixels: the bar, its ticks and one line of words
    extra_lines = scale_words(bar_width * width / dpi, fontsize).count("\n")
    height = one_line + round(extra_lines * 1.5 * fontsize * dpi / 72)
    bar_top, bar_height = 0.14 * one_line / height, 0.24 * one_line / height  # the bar keeps its place from the top
    figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
    colour_bar(figure, (0.06, 1 - bar_top - bar_height, bar_width, bar_height), fontsize=fontsize)
    return cv2.resize(as_pixels(figure), (width, height), interpolation=cv2.INTER_AREA)  # exact size whatever the rounding


def with_colour_bar(picture: np.ndarray) -> np.ndarray:
    """A heatmap picture (H, W, 3) with its colour bar under it, as one picture (for the app)."""
    return np.concatenate([picture, colour_bar_strip(picture.shape[1])], axis=0)


def model_line(diagnosis: Diagnosis) -> str:
    """Which model gave a diagnosis and what it learned from, in one line (the case sheet's and the overlay's)."""
    info = diagnosis.model
    return f"{info['name']}, revision {info['revision']}, trained on {info['dataset']}"


def overlay_sheet(diagnosis: Diagnosis, name: str | None = None) -> Figure:
    """The CLI's overlay figure of one diagnosis: the outlined lesion and each stream's heatmap, titled, with
    their colour bars, the method and lesion focus under each map, the top scores; under them any note on the
    maps, the warnings, and the model with what it learned from, so the picture carries them when shared alone.
    The figure grows downwards with those lines (11 × 5 inches without them)."""
    shown = pictures(diagnosis.image, diagnosis)
    notes = [f"{TITLES[f'heat_{stream}']}: {note}" for stream, note in (diagnosis.heatmap_notes or {}).items()]
    footer = "\n".join(textwrap.fill(line, 190) for line in
                       [*notes, *[f"Warning: {w}" for w in diagnosis.warnings], f"Model: {model_line(diagnosis)}. {DISCLAIMER}"])
    below = 0.15 * (footer.count("\n") + 1)  # inches of footer, at ~0.15 in a line of 7 pt
    height = 5 + below
    from_top = lambda y: 1 - (1 - y) * 5 / height  # noqa: E731  (a height in the 5-inch layout, kept from the top)
    figure = Figure(figsize=(11, height), facecolor="white")
    scores = sorted(diagnosis.scores().items(), key=lambda item: -item[1])[:3]
    top_scores = ", ".join(f"{vocab.DIAGNOSIS_NAMES[c].split(' (')[0]} ({c}) {percent(p)}" for c, p in scores)
    figure.text(0.5, from_top(0.97), name or diagnosis.image_id or "dermfuse", ha="center", va="top", fontsize=11,
                fontweight="bold", parse_math=False)
    line = f"Top scores: {top_scores}" if diagnosis.assessable else "Not assessable, no diagnosis: " + " ".join(diagnosis.reasons)
    figure.text(0.5, from_top(0.91), textwrap.fill(line, 150), ha="center", va="top", fontsize=9, parse_math=False,
                color="black" if diagnosis.assessable else "#c0392b")
    explained = {**(diagnosis.heatmap_methods or {}), **(diagnosis.heatmap_notes or {})}  # streams with a map or a note
    keys = ["outline"] + [f"heat_{s}" for s in STREAMS if s in explained]
    for column, key in enumerate(keys):
        stream = key.removeprefix("heat_")
        caption = heat_caption(diagnosis, stream) if key != "outline" else ""
        draw_picture(figure, (0.02 + column * 0.33, from_top(0.1), 0.30, 0.66 * 5 / height), shown[key], TITLES[key], caption,
                     heat=key != "outline")
    figure.text(0.02, 0.02 * 5 / height, footer, ha="left", va="bottom", fontsize=7, color="dimgrey", parse_math=False)
    return figure
