"""The result of one diagnosis, and its JSON form."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass, field, fields

import numpy as np

from . import vocab

# Withheld for an image that is not assessable: the scores, and what is read from them or from the lesion.
WITHHELD_FIELDS = ("probabilities", "probabilities_without_metadata", "top_index", "top_class", "top_probability", "top_diagnosis",
                   "abcd", "operating_points")
ARRAY_FIELDS = ("mask", "mask_probability", "lesion_image", "heatmaps", "attention", "image")


@dataclass
class Diagnosis:
    """Everything the pipeline found for one image.

    Arrays are at the input image's resolution (H, W) unless noted: ``mask`` (bool),
    ``mask_probability`` (float32), ``heatmaps`` (stream → float32 in [0, 1]), ``attention``
    (the segmenter's gate maps, deep → shallow); ``lesion_image`` is the crop the lesion stream saw;
    ``image`` (uint8, H×W×3) is the input as the pipeline decoded it, upright RGB, so a caller that
    shows it does not decode it again. ``lesion_box`` ([x0, y0, x1, y1], may reach outside the image)
    is where the lesion image was cut from, ``None`` when it is the whole image; the lesion stream's
    heatmap is zero outside it, and the image stream's outside the part of the frame it saw (the central
    square of a non-square frame, for a model whose ``image_framing`` says so, within the lit field where a model with
    ``dark_frame: "filled"`` filled a dermatoscope's dark frame in; its note says so).
    ``heatmap_methods`` names the method that made each stream's map
    (a stream without a usable map has none in ``heatmaps``); ``heatmap_notes`` says, in plain words,
    why a stream's map is not the usual Grad-CAM or is missing. ``lesion_focus`` is ``None`` per
    stream (or as a whole, when no lesion was found) where it cannot be measured. ``probabilities``
    are calibrated (``DermFuse.calibrate``), in the order of ``classes``; ``metadata`` holds the
    patient's checked values as given (age in years or ``None`` when unknown, sex, site) and
    ``metadata_used`` the known fields the model was given: only those it learned from, none with the
    teaching switch off. ``probabilities_without_metadata`` had every field unknown.

    ``skin_tone`` is the ITA° and band of the skin around the lesion, or why it could not be measured
    (``skin_tone.py``), with the band's share of the model's training images where the model stores it.
    ``operating_points`` places the melanoma score against each threshold the model stores (rule,
    threshold, validation sensitivity and specificity, whether it flags the case, one sentence saying
    so: ``operating_points.py``); ``None`` for a model without them.

    ``assessable`` is False when the image failed the assessability gate (``assess.py``); ``reasons``
    then say why, and no diagnosis should be shown: ``to_dict`` leaves the scores out unless asked.

    ``abcd`` holds the ABCD rule of dermoscopy's A, B and C (``criteria.ABCDCriteria.to_dict``: each score with
    its numbers, definition and source; D not computed), ``None`` when no lesion was found; it is withheld
    with the scores.
    """

    classes: list[str]
    probabilities: list[float]
    probabilities_without_metadata: list[float]
    metadata: dict
    top_index: int
    mask: np.ndarray
    mask_probability: np.ndarray
    lesion_image: np.ndarray
    model: dict
    warnings: list[str] = field(default_factory=list)
    heatmaps: dict[str, np.ndarray] | None = None
    lesion_focus: dict[str, float | None] | None = None
    heatmap_methods: dict[str, str] | None = None
    heatmap_notes: dict[str, str] | None = None
    lesion_box: list[int] | None = None
    attention: list[np.ndarray] | None = None
    measurements: dict | None = None
    ood_score: float | None = None
    ood_threshold: float | None = None
    skin_tone: dict | None = None
    operating_points: list[dict] | None = None
    image_id: str | None = None
    image: np.ndarray | None = None
    assessable: bool = True
    reasons: list[str] = field(default_factory=list)
    dermoscopy_score: float | None = None
    assessment_numbers: dict[str, float] | None = None
    metadata_used: list[str] = field(default_factory=list)
    abcd: dict | None = None

    @property
    def top_class(self) -> str:
        return self.classes[self.top_index]

    @property
    def top_probability(self) -> float:
        return self.probabilities[self.top_index]

    @property
    def lesion_found(self) -> bool:
        return bool(self.mask.any())

    def scores(self, with_metadata: bool = True) -> dict[str, float]:
        """Class → calibrated probability."""
        values = self.probabilities if with_metadata else self.probabilities_without_metadata
        return dict(zip(self.classes, values))

    def to_dict(self, arrays: bool = False, scores_if_not_assessable: bool = False) -> dict:
        """Plain JSON-ready dict; with ``arrays`` the images and maps too (as base64 ``.npy``).

        For an image that is not assessable the scores and the top class are ``None`` unless
        ``scores_if_not_assessable``; ``scores_withheld`` says whether they were left out.
        """
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ARRAY_FIELDS:
                if arrays:
                    out[f.name] = _encode(value)
                continue
            out[f.name] = value
        out["top_class"] = self.top_class
        out["top_probability"] = self.top_probability
        out["top_diagnosis"] = vocab.DIAGNOSIS_NAMES[self.top_class]
        out["lesion_found"] = self.lesion_found
        out["scores_withheld"] = not self.assessable and not scores_if_not_assessable
        if out["scores_withheld"]:
            for key in WITHHELD_FIELDS:
                out[key] = None
        return out

    def to_json(self, arrays: bool = False, scores_if_not_assessable: bool = False, **kwargs) -> str:
        return json.dumps(self.to_dict(arrays=arrays, scores_if_not_assessable=scores_if_not_assessable), **kwargs)

    @classmethod
    def from_dict(cls, data: dict) -> "Diagnosis":
        missing = [f.name for f in fields(cls) if f.name in ARRAY_FIELDS[:3] and f.name not in data]
        if missing:
            raise ValueError(f"cannot rebuild a Diagnosis without its arrays {missing}: save it with to_json(arrays=True)")
        if data.get("scores_withheld"):
            raise ValueError("this result was saved without its scores (the image was not assessable): save it with "
                             "to_json(arrays=True, scores_if_not_assessable=True)")
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for name in ARRAY_FIELDS:
            if name in values:
                values[name] = _decode(values[name])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "Diagnosis":
        return cls.from_dict(json.loads(text))


def _encode(value):
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value), allow_pickle=False)
    return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _decode(value):
    if value is None:
        return None
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict) and set(value) == {"npy"}:
        return np.load(io.BytesIO(base64.b64decode(value["npy"])), allow_pickle=False)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    raise ValueError(f"not an encoded array: {str(value)[:80]}")
