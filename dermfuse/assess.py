"""Can the model judge this image? The assessability gate every diagnosis passes.

An image that fails it is *not assessable*: the result says why, in plain words, and shows no
diagnosis (the scores stay in the JSON only when asked for). Two kinds of check:

- **Rules**, plain facts about the image and the mask, each with its own reason: blank or a few
  flat colours (a graphic, not a photograph), over- or under-exposed, no lesion found, a lesion that
  fills the frame (its outline is mostly the image border, so much of it may lie outside). They need
  no fitting and hold for every model. Two more hold for the models that state them: an image whose
  shorter side is under the model's ``min_image_side`` is too small to judge (a thumbnail or a
  screenshot; ``experiments/resolution.py`` measures that side on smaller copies of validation images),
  one whose sharpness is under its ``min_sharpness`` is out of focus (``experiments/focus.py``), and in
  one whose lesion differs from the skin around it by less than its ``min_lesion_contrast`` no lesion
  stands out: the segmenter, which always saw a lesion, outlined a patch of bare skin
  (``experiments/bare_skin.py``).
- **A dermoscopy score**: logistic regression (on each input and its square) on features that
  describe what a dermoscopy image *is*, a lesion on skin under polarised magnification: after white
  balance (a dermoscope's colour cast is not a feature), skin-coloured pixels, few foreign hues (sky,
  leaves, paint), little grey (documents, screenshots), a segmenter that finds one confident blob
  that differs from the skin around it, soft texture rather than the sharp edges of text and
  drawings, the distance of the image encoder's features from the training images' (``ood.py``), and
  those features' first principal components (what the network sees). It is fitted per model (the
  features are the model's) on real dermoscopy against a non-dermoscopy set (``experiments/gate.py``)
  and stored in the model's config under ``gate``; its threshold rejects a stated share of
  *validation* dermoscopy. A model without a fitted gate has the rules only.
"""

from __future__ import annotations

import cv2
import numpy as np

from .ood import THUMBNAIL, sharpness, thumbnail  # every number is computed on a square thumbnail: independent of the upload's resolution

# Rule thresholds (experiments/gate.py reports how often each fires on real dermoscopy and on other images).
FLAT_COLOURS = 8  # at most this many 5-bit colours cover 95 % of the pixels: a graphic or a blank frame
OVEREXPOSED = 0.5  # share of the pixels at grey >= 250
UNDEREXPOSED = 20.0  # mean grey level (0–255)
MIN_LESION_AREA = 0.002  # share of the frame
OUTSIDE_FRAME = 0.75  # share of the lesion's outline that is the image border
BLANK = "The image is blank (a single colour): there is nothing to assess."
# Heavy JPEG compression (experiments/capture.py, docs/results/capture.json), (least shorter side, the highest quality
# that is warned of): the model learned from 256-px copies saved at quality 75. Saved again at 50 or less, its 256-px
# validation images changed top class on 12–31 % (0.2 % at 75); PH2's 765×572 images, which the networks see shrunk
# further, changed it on 15–55 % at 20 or less (6–10 % at 30 to 90). Between the measured sizes the stricter holds.
COMPRESSION_WARNED = ((553, 20), (0, 50))  # 553 px: the shortest side of PH2's images

FEATURES = (
    "skin_share", "foreign_hue_share", "grey_share", "lightness_spread", "saturation",
    "segmenter_confidence", "lesion_area", "lesion_solidity", "lesion_contrast", "lesion_centrality",
    "edge_density", "sharpness", "deep_distance",
)
_percent = lambda v: f"{100 * v:.0f} %"  # noqa: E731
# Each feature in words, and how to show its value (the reason names the one that lowers the score most).
FEATURE_WORDS = {
    "skin_share": ("share of skin-coloured pixels", _percent),
    "foreign_hue_share": ("share of greens, blues and purples", _percent),
    "grey_share": ("share of grey pixels", _percent),
    "lightness_spread": ("spread of lightness (L*)", lambda v: f"{v:.0f}"),
    "saturation": ("colour saturation", _percent),
    "segmenter_confidence": ("segmenter's confidence", _percent),
    "lesion_area": ("lesion's share of the frame", _percent),
    "lesion_solidity": ("lesion's solidity (its area over its convex hull's)", _percent),
    "lesion_contrast": ("colour difference between the lesion and the skin around it (ΔE*ab)", lambda v: f"{100 * v:.0f}"),
    "lesion_centrality": ("lesion's centrality", lambda v: f"{v:.2f}"),
    "edge_density": ("share of sharp edges", _percent),
    "sharpness": ("sharpness (log variance of the Laplacian)", lambda v: f"{v:.1f}"),
    "deep_distance": ("distance of the image encoder's features from its training images' (log)", lambda v: f"{v:.1f}"),
}
ENCODER_WORDS = "what the image encoder sees (its features' principal components)"


def thumbnails(image: np.ndarray, probability: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image (RGB uint8, or its ``thumbnail`` already), the segmenter's probability map and the mask as
    THUMBNAIL² squares."""
    size = (THUMBNAIL, THUMBNAIL)
    return (thumbnail(image),
            cv2.resize(probability.astype(np.float32), size, interpolation=cv2.INTER_AREA),
            cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool))


def rule_numbers(small: np.ndarray, lesion: np.ndarray, width: int, height: int,
                 lab: np.ndarray | None = None) -> dict[str, float]:
    """What the rules look at: the frame's ``width`` and ``height``, and from the thumbnails flat colours, exposure,
    sharpness, lesion area, border share and the lesion's contrast with the skin around it (ΔE*ab; ``lab``: the
    thumbnail's ``balanced_lab`` where the caller has it already)."""
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    return {"width": width, "height": height, "flat_colours": flat_colour_count(small),
            "white_share": float((grey >= 250).mean()), "mean_grey": float(grey.mean()), "sharpness": sharpness(grey), "lesion_area": float(lesion.mean()),
            "border_share": border_share(lesion), "lesion_delta_e": lesion_contrast(balanced_lab(small) if lab is None else lab, lesion)}


def rule_reasons(numbers: dict[str, float], min_side: int = 0, min_sharpness: float = 0.0,
                 min_lesion_contrast: float = 0.0) -> list[str]:
    """The rules' reasons (plain sentences) why an image with these ``rule_numbers`` cannot be judged; with
    ``min_side``, also an image whose ``numbers`` ``width`` and ``height`` (the frame's) have a shorter side under it,
    with ``min_sharpness`` one whose sharpness is under that (out of focus, a small image enlarged, or washed out:
    the sharpness falls with the contrast too, ``experiments/capture.py``), and with ``min_lesion_contrast`` (ΔE*ab)
    one whose lesion, inside the frame, differs less than that from the skin around it (bare skin)."""
    if numbers["flat_colours"] <= 1:
        return [BLANK]
    reasons = []
    if min_side and min(numbers["width"], numbers["height"]) < min_side:
        width, height = numbers["width"], numbers["height"]
        reasons.append(f"The image is too small to judge: {width}×{height} pixels, and this model needs at least "
                       f"{min_side} px on its shorter side (on smaller copies of its validation images it did measurably "
                       "worse). Upload the original image, not a thumbnail or a screenshot.")
    if min_sharpness and numbers["sharpness"] < min_sharpness:
        reasons.append(f"The image is out of focus (or washed out): its sharpness is {numbers['sharpness']:.2f}, under the "
                       f"{min_sharpness:.2f} this model needs (blurred copies of its validation images were judged much "
                       "worse, and more confidently). Retake it in focus and well exposed, or upload the original rather "
                       "than an enlarged copy.")
    if numbers["flat_colours"] <= FLAT_COLOURS:
        reasons.append(f"The image is made of {numbers['flat_colours']} flat colours: a graphic or a test pattern, "
                       "not a photograph of skin.")
    if numbers["white_share"] > OVEREXPOSED:
        reasons.append(f"The image is over-exposed ({100 * numbers['white_share']:.0f} % of it is white): retake it with less light.")
    if numbers["mean_grey"] < UNDEREXPOSED:
        reasons.append("The image is under-exposed (almost black): retake it with more light.")
    if numbers["lesion_area"] < MIN_LESION_AREA:
        reasons.append("No lesion was found in the image.")
    elif numbers["border_share"] > OUTSIDE_FRAME:
        reasons.append("The lesion fills the frame, so much of it may lie outside: retake the image with the whole "
                       "lesion in view.")
    elif min_lesion_contrast and numbers["lesion_delta_e"] < min_lesion_contrast:
        reasons.append(f"No lesion stands out from the skin: what the segmenter outlined differs from the skin around it by "
                       f"a colour difference (ΔE*ab) of {numbers['lesion_delta_e']:.1f}, under the {min_lesion_contrast:.1f} "
                       "this model needs (on bare skin the segmenter still outlines a patch, and the model would still "
                       "give it scores). Upload an image with the lesion in view; a lesion in view that is this pale is not "
                       "judged here.")
    return reasons


def compression_warning(quality: int | None, width: int, height: int) -> str | None:
    """A caution for an image whose JPEG file (``quality``: ``dermfuse.data.io.jpeg_quality``) was compressed as hard
    as copies of real images whose scores then moved (``COMPRESSION_WARNED``); None otherwise, and for other files.
    Only the last save is known: an image compressed hard and saved again at a high quality is not caught."""
    if quality is None:
        return None
    warned = next(most for side, most in COMPRESSION_WARNED if min(width, height) >= side)
    if quality > warned:
        return None
    return (f"This JPEG file was saved with strong compression (quality {quality}): copies of real dermoscopy images of "
            f"about this size compressed at quality {warned} or less got a different top class on more than one in ten. "
            "The scores are shown unchanged; upload the original file if you have it.")


def flat_colour_count(image: np.ndarray, coverage: float = 0.95) -> int:
    """How many colours (5 bits a channel) it takes to cover ``coverage`` of the pixels."""
    codes = (image.reshape(-1, 3).astype(np.int32) >> 3) @ np.array([1024, 32, 1])
    counts = np.sort(np.bincount(codes))[::-1]
    return int(np.searchsorted(np.cumsum(counts), coverage * len(codes)) + 1)


def border_share(mask: np.ndarray) -> float:
    """Share of the lesion's outline that is the image border (0 when the lesion lies inside the frame)."""
    if not mask.any():
        return 0.0
    # Eroding with a zero border makes the pixels on the image edge part of the outline too.
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    outline = mask & ~inner.astype(bool)
    edge = np.zeros(mask.shape, dtype=bool)
    edge[0], edge[-1], edge[:, 0], edge[:, -1] = True, True, True, True
    return float((outline & edge).sum() / outline.sum())


def grey_world(small: np.ndarray) -> np.ndarray:
    """White-balance by the grey-world assumption (each channel scaled to the same mean), so a dermoscope's
    colour cast (bluish, yellowish) does not read as foreign colours."""
    pixels = small.astype(np.float32)
    lit = pixels.sum(axis=2) > 30  # leave out black corners
    means = pixels[lit].mean(axis=0) if lit.any() else pixels.reshape(-1, 3).mean(axis=0)
    return np.clip(pixels * (means.mean() / np.maximum(means, 1.0)), 0, 255).astype(np.uint8)


def balanced_lab(small: np.ndarray) -> np.ndarray:
    """The thumbnail white-balanced (``grey_world``) in CIELAB (H, W, 3): L* 0–100, a*, b* about ±100."""
    return cv2.cvtColor(grey_world(small).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def lesion_contrast(lab: np.ndarray, lesion: np.ndarray) -> float:
    """ΔE*ab between the lesion's mean colour and that of a thin ring of skin around it (``lab``: ``balanced_lab``);
    0 without a lesion or without skin around it."""
    if not lesion.any():
        return 0.0
    ring = cv2.dilate(lesion.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~lesion
    return float(np.linalg.norm(lab[ring].mean(0) - lab[lesion].mean(0))) if ring.any() else 0.0


def dermoscopy_features(small: np.ndarray, prob: np.ndarray, lesion: np.ndarray, deep_distance: float,
                        lab: np.ndarray | None = None) -> np.ndarray:
    """The gate's features (``FEATURES``) from the thumbnails (``thumbnails``) and the model's deep OOD distance
    (``lab``: the thumbnail's ``balanced_lab`` where the caller has it already)."""
    lab = balanced_lab(small) if lab is None else lab
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    chroma, hue = np.hypot(a, b), np.degrees(np.arctan2(b, a))
    lit = (lightness > 10) & (lightness < 97)  # leave out a dermoscope's black corners and glare
    skin = lit & (chroma >= 4) & (hue >= -10) & (hue <= 100)  # red through orange to yellow-brown
    foreign = lit & (chroma >= 12) & ((hue > 120) | (hue < -45))  # greens, blues, purples
    grey = lit & (chroma < 2)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    share = lambda m: float(m.sum() / max(lit.sum(), 1))  # noqa: E731
    area = float(lesion.mean())
    solidity = centrality = 0.0
    contrast = lesion_contrast(lab, lesion)
    if lesion.any():
        contours, _ = cv2.findContours(lesion.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
        solidity = float(min(1.0, lesion.sum() / max(hull, 1.0)))
        ys, xs = np.nonzero(lesion)
        centrality = float(1.0 - np.hypot(ys.mean() / THUMBNAIL - 0.5, xs.mean() / THUMBNAIL - 0.5) / np.hypot(0.5, 0.5))
    return np.array([
        share(skin), share(foreign), share(grey), float(lightness[lit].std()) if lit.any() else 0.0,
        float(hsv[..., 1].mean() / 255.0),
        float(np.abs(2 * prob - 1).mean()), area, solidity, contrast / 100.0, centrality,
        float((cv2.Canny(gray, 100, 200) > 0).mean()), sharpness(gray),
        float(np.log1p(deep_distance)),
    ], dtype=np.float64)


def gate_inputs(gate: dict, features: np.ndarray, pooled: np.ndarray | None) -> np.ndarray:
    """The score's inputs (N, 2·D): the features, then the image encoder's pooled features projected on the
    gate's principal components (when it has them), z-scored; each with its square, so the score can
    penalise a value that is too low *and* one that is too high (a flat gradient and a noise image)."""
    inputs = np.atleast_2d(features)
    if gate.get("deep_basis"):
        projected = (np.atleast_2d(pooled) - np.asarray(gate["deep_mean"])) @ np.asarray(gate["deep_basis"]).T
        inputs = np.concatenate([inputs, projected], axis=1)
    z = (inputs - np.asarray(gate["mean"])) / np.asarray(gate["std"])
    return np.concatenate([z, z**2], axis=1)


def fit_gate(dermoscopy: np.ndarray, other: np.ndarray, validation: np.ndarray, rejection: float = 0.01,
             pooled: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, components: int = 8,
             c: float = 0.3) -> dict:
    """Fit the dermoscopy score on ``FEATURES`` (N, F) of real dermoscopy and of other images; the threshold
    rejects ``rejection`` of the ``validation`` dermoscopy (images the fit did not see).

    ``pooled``: the image encoder's pooled features of the same three sets; their first ``components``
    principal components (of the fitting images) join the features: what the network sees, not only
    what the handcrafted statistics measure.
    """
    from sklearn.decomposition import PCA  # training-time only
    from sklearn.linear_model import LogisticRegression

    if len(dermoscopy) < 20 or len(other) < 20 or len(validation) < 20:
        raise ValueError("fitting the gate needs at least 20 images of each kind and 20 validation images")
    gate = {"features": list(FEATURES), "rejection": rejection}
    features = np.concatenate([dermoscopy, other])
    if pooled is not None and components:
        pca = PCA(n_components=components, random_state=0).fit(np.concatenate(pooled[:2]))
        gate.update(deep_mean=pca.mean_.tolist(), deep_basis=pca.components_.tolist())
        features = np.concatenate([features, pca.transform(np.concatenate(pooled[:2]))], axis=1)
    gate.update(mean=features.mean(0).tolist(), std=np.maximum(features.std(0), 1e-6).tolist(),
                dermoscopy_mean=features[:len(dermoscopy)].mean(0).tolist())  # what ``lowest_input`` compares with
    pooled_sets = pooled if pooled is not None else (None, None, None)
    inputs = np.concatenate([gate_inputs(gate, dermoscopy, pooled_sets[0]), gate_inputs(gate, other, pooled_sets[1])])
    labels = np.r_[np.ones(len(dermoscopy)), np.zeros(len(other))]
    regression = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(inputs, labels)
    gate.update(weights=regression.coef_[0].tolist(), bias=float(regression.intercept_[0]))
    gate["threshold"] = float(np.quantile(dermoscopy_score(gate, validation, pooled_sets[2]), rejection))
    return gate


def dermoscopy_score(gate: dict, features: np.ndarray, pooled: np.ndarray | None = None) -> np.ndarray:
    """Log-odds (N,) that each image is dermoscopy; below ``gate["threshold"]`` it is not assessable."""
    if list(gate["features"]) != list(FEATURES):
        raise ValueError("this model's gate was fitted on other features: refit it with `python -m train gate`")
    if gate.get("deep_basis") and pooled is None:
        raise ValueError("this gate needs the image encoder's pooled features")
    return gate_inputs(gate, features, pooled) @ np.asarray(gate["weights"]) + gate["bias"]


def lowest_input(gate: dict, features: np.ndarray, pooled: np.ndarray | None = None) -> str | None:
    """In words, the input that lowers one image's dermoscopy score most against the mean of the real dermoscopy the
    gate was fitted on (its value here and there), the image encoder's principal components counted as one; ``None``
    for a gate fitted before it kept that mean."""
    if "dermoscopy_mean" not in gate:
        return None
    here = gate_inputs(gate, features, pooled)[0]  # (2·D,): z-scores, then their squares
    typical = (np.asarray(gate["dermoscopy_mean"]) - np.asarray(gate["mean"])) / np.asarray(gate["std"])  # (D,)
    reference = np.concatenate([typical, typical**2])
    weights, inputs = np.asarray(gate["weights"]), len(here) // 2
    change = weights * (here - reference)  # each term's share of the score against the reference
    per_input = change[:inputs] + change[inputs:]  # (D,): a value and its square together
    named, encoder = per_input[:len(FEATURES)], per_input[len(FEATURES):]  # (F,), (components,)
    if encoder.size and encoder.sum() < named.min():
        return f"most of all in {ENCODER_WORDS}"
    top = int(np.argmin(named))
    words, shown = FEATURE_WORDS[FEATURES[top]]
    value = float(np.atleast_2d(features)[0][top])
    return (f"most of all in its {words}: {shown(value)} here, {shown(gate['dermoscopy_mean'][top])} on average in the "
            "real dermoscopy this check learned from")


def assess(image: np.ndarray, probability: np.ndarray, mask: np.ndarray, gate: dict | None,
           deep_distance: float | None, pooled: np.ndarray | None = None, min_side: int = 0,
           min_sharpness: float = 0.0, min_lesion_contrast: float = 0.0) -> tuple[list[str], float | None, dict]:  # fmt: skip
    """(reasons, dermoscopy score, the numbers behind them) for one image; assessable when ``reasons`` is empty.

    ``image``: RGB uint8, or its ``thumbnail`` (all the checks look at); ``probability`` and ``mask`` at the
    image's own size, which is the frame's. The features need the model's deep OOD distance (``None`` without an OOD
    gate); the score needs a fitted ``gate`` and the image encoder's pooled features (C,). ``min_side``,
    ``min_sharpness`` and ``min_lesion_contrast``: the model's ``min_image_side``, ``min_sharpness`` and
    ``min_lesion_contrast`` (0: none).
    """
    small, prob, lesion = thumbnails(image, probability, mask)
    lab = balanced_lab(small)  # the rules' lesion contrast and the score's colour features, converted once
    numbers = rule_numbers(small, lesion, mask.shape[1], mask.shape[0], lab)
    reasons = rule_reasons(numbers, min_side, min_sharpness, min_lesion_contrast)
    if deep_distance is None:
        return reasons, None, numbers
    features = dermoscopy_features(small, prob, lesion, deep_distance, lab)
    numbers.update(zip(FEATURES, features.tolist()))
    score = None
    if gate is not None:
        score = float(dermoscopy_score(gate, features, pooled)[0])
        if score < gate["threshold"] and reasons != [BLANK]:
            lowest = lowest_input(gate, features, pooled)
            reasons.append(
                f"This does not look like a dermoscopy image (dermoscopy score {score:.1f}, under the threshold "
                f"{gate['threshold']:.1f} that {100 * gate['rejection']:.1f} % of real dermoscopy images fall below)"
                + (f", {lowest}. Upload" if lowest else ": upload") + " a dermoscopy image of the lesion."
            )
    return reasons, score, numbers
